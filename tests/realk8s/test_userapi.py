"""The agents' user API (mosix/agent/userapi.py) against a real kube-apiserver: who a caller is and what
they may do come from the server itself (TokenReview, SubjectAccessReview under RBAC), as for the kubelet.

The API runs in this process (no runc needed): its home folder holds one job's output; the users are the
server's ``admin`` (system:masters) and ``tester`` (no rights until a RoleBinding), by token, and a user
of a client CA made here, by certificate.
"""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import http.client
import json
import pathlib
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import yaml

from mosix.agent import delegated, homeio, tls, userapi
from mosix.api import meta
from mosix.client import kube
from tests import ports

if TYPE_CHECKING:
    from tests.realkube import Kube

pytestmark = pytest.mark.realk8s


@dataclasses.dataclass
class Served:
    kube: Kube
    port: int
    ca: pathlib.Path  # the mosix CA: the agent's serving certificate
    user_ca: tls.Identity  # the client CA the agent trusts (as the cluster's)
    home: homeio.HomeOutput
    namespace: str
    admin: str
    tester: str
    shutdown: collections.abc.Callable[[], None]  # the agent's user API begins to stop (aiohttp's on_shutdown)

    def call(self, method: str, path: str, token: str | None = None, body: bytes | None = None,
             cert: tls.Identity | None = None) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}"} if token else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def held(self, path: str, token: str) -> tuple[int, bytes, str | None]:
        """A log request with ?wait: its status, body and how the agent held it."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           context=ssl.create_default_context(cafile=str(self.ca)), timeout=60)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.getheader(userapi.HELD_HEADER)
        finally:
            conn.close()

    def log(self, job: str = "job1") -> str:
        return f"/namespaces/{self.namespace}/mosixjobs/{job}/log?stream=stdout&offset=0"

    def grant(self, user: str, permission: userapi.Permission) -> None:
        """A Role with exactly what the agent asks for, bound to `user` in the job's namespace."""
        name = f"mosix-job-{permission.subresource}-{user}"
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": self.namespace},
                "rules": [{"apiGroups": [meta.GROUP], "resources": [f"{userapi.RESOURCE}/{permission.subresource}"],
                           "verbs": [permission.verb]}]}
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": name, "namespace": self.namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
        self.kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding]), check=True)


def _eventually(what: str, check: object, timeout: float = 40.0) -> None:
    """Polls until check() holds: a refusal stays cached for delegated.DENIED_TTL seconds."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def served(kube_apiserver: Kube, tmp_path: pathlib.Path) -> Iterator[Served]:
    beside = kube_apiserver.kubeconfig.parent / "tester.token"  # a server given by MOSIX_E2E_KUBECONFIG
    tester = kube_apiserver.tester_token or (beside.read_text().strip() if beside.is_file() else None)
    if tester is None:
        pytest.skip(f"needs the server's unprivileged user tester ({beside}; shared/k8s/apiserver up writes it)")
    admin = yaml.safe_load(kube_apiserver.kubeconfig.read_text())["users"][0]["user"]["token"]
    ca = tls.make_ca(tmp_path / "mosix-ca")
    agent = tls.issue(ca, tmp_path / "agent", "node1", ("127.0.0.1",))
    user_ca = tls.make_ca(tmp_path / "client-ca", name="cluster client CA")
    home = homeio.HomeOutput(tmp_path / "home")
    namespace = f"userapi-{secrets.token_hex(3)}"
    kube_apiserver.kubectl("create", "namespace", namespace, check=True)
    home.append(f"{namespace}/job1", "stdout", 0, b"hello\n")
    api_client = kube.connect(str(kube_apiserver.kubeconfig))
    context = userapi.server_context(agent, user_ca.cert.read_text())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = ports.free_port()
    runner = asyncio.run_coroutine_threadsafe(userapi.serve(
        "127.0.0.1", port, context, home=home, reviewer=delegated.Reviewer(api_client),
        is_home=lambda ns, name: name != "elsewhere"), loop).result(30)
    try:
        yield Served(kube_apiserver, port, ca.cert, user_ca, home, namespace, admin, tester,
                     lambda: asyncio.run_coroutine_threadsafe(runner.shutdown(), loop).result(30))
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        kube_apiserver.kubectl("delete", "namespace", namespace, "--wait=false")


def test_no_credentials_or_a_token_the_server_rejects_is_401(served: Served) -> None:
    for token in (None, "not-a-token"):
        status, body = served.call("GET", served.log(), token)
        assert status == 401 and b"hello" not in body, body


def test_a_user_reads_output_only_once_rbac_grants_mosixjobs_log(served: Served) -> None:
    status, body = served.call("GET", served.log(), served.tester)
    assert status == 403, body
    assert "user 'tester' may not get mosixjobs/log 'job1'" in json.loads(body)["error"]
    served.grant("tester", userapi.LOG)
    _eventually("tester to be allowed", lambda: served.call("GET", served.log(), served.tester)[0] == 200)
    assert served.call("GET", served.log(), served.tester) == (200, b"hello\n")
    # Reading is not writing: feeding its input needs mosixjobs/input.
    path = f"/namespaces/{served.namespace}/mosixjobs/job1/input"
    assert served.call("POST", path, served.tester, b"x")[0] == 403
    served.grant("tester", userapi.INPUT)
    _eventually("tester to feed input", lambda: served.call("POST", path, served.tester, b"line 1\n")[0] == 200)
    assert served.call("POST", f"{path}?end=1", served.tester, b"line 2\n")[0] == 200
    assert served.home.read_input(f"{served.namespace}/job1", 0) == (b"line 1\nline 2\n", True)


def test_only_jobs_whose_home_is_here_and_well_formed_requests(served: Served) -> None:
    assert served.call("GET", served.log("elsewhere"), served.admin)[0] == 404
    assert served.call("GET", served.log() + "&process=x", served.admin)[0] == 400
    assert served.call("GET", served.log().replace("stdout", "stdin"), served.admin)[0] == 400
    assert served.call("GET", served.log(), served.admin) == (200, b"hello\n")


def test_a_client_certificate_of_the_clusters_client_ca_authenticates(served: Served, tmp_path: pathlib.Path) -> None:
    cert = tls.issue(served.user_ca, tmp_path / "tester-cert", "tester")
    assert served.call("GET", served.log(), cert=cert)[0] == 403  # the certificate's user, with its rights
    served.grant("tester", userapi.LOG)
    _eventually("tester's certificate to be allowed", lambda: served.call("GET", served.log(), cert=cert)[0] == 200)
    stranger = tls.issue(tls.make_ca(tmp_path / "other-ca"), tmp_path / "stranger", "tester")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        served.call("GET", served.log(), cert=stranger)


def test_a_held_log_request_answers_when_output_arrives_or_the_job_finishes(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mosix logs -f` and mosrun hold a request at the home agent instead of polling it."""
    key, after = f"{served.namespace}/job1", served.log().replace("offset=0", "offset=6")
    assert served.held(after + "&wait=x", served.admin)[0] == 400
    assert served.held(after + f"&wait={userapi.MAX_WAIT + 1:g}", served.admin)[0] == 400
    assert served.held(served.log() + "&wait=5", served.admin) == (200, b"hello\n", "held")  # there already
    assert served.held(after + "&wait=0.2", served.admin) == (200, b"", "held")  # nothing came

    holding = threading.Event()
    listen = served.home.listen

    def spied(key: str, changed: collections.abc.Callable[[], None]) -> collections.abc.Callable[[], None]:
        stop = listen(key, changed)
        holding.set()
        return stop

    monkeypatch.setattr(served.home, "listen", spied)

    def then(step: collections.abc.Callable[[], object]) -> threading.Thread:
        """Runs step once a request is held."""
        holding.clear()
        thread = threading.Thread(target=lambda: (holding.wait(30), step()))
        thread.start()
        return thread

    wait = f"&wait={userapi.MAX_WAIT:g}"
    for step, answer in [(lambda: served.home.append(key, "stdout", 6, b"more\n"), (200, b"more\n", "held")),
                         (lambda: served.home.set_finished([key]), (200, b"", "finished"))]:
        thread = then(step)
        began = time.monotonic()
        got = served.held(after.replace("offset=6", f"offset={served.home.size(key, 'stdout')}") + wait, served.admin)
        thread.join()
        assert got == answer
        assert time.monotonic() - began < userapi.MAX_WAIT - 5  # woken, not answered when the wait ran out
    assert served.held(after + wait, served.admin) == (200, b"more\n", "finished")  # finished: never held

    thread = then(served.shutdown)  # a stopping agent answers what it holds at once, not after the wait
    began = time.monotonic()
    assert served.held(served.log("job2") + wait, served.admin) == (200, b"", "held")
    thread.join()
    assert time.monotonic() - began < userapi.MAX_WAIT - 5
