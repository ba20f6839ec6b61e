"""The real install: both images built and loaded into the single-node cluster, ``helm install``, a MosixJob run.

On the cluster of ``kube_cluster`` (``shared/k8s/cluster``, pods really run), as a sysadmin would do it:

1. build ``mosix/operator`` and ``mosix/agent`` with ``mosix.images`` (the docker SDK; the base is made locally,
   no registry being reachable) and copy them into the cluster's containerd (``shared/k8s/cluster load``);
2. ``helm install mosix charts/mosix`` overriding only the images' repository, tag and pullPolicy (Never);
3. the operator pods and the agent pod become Ready; the agent's MosixNode appears and its heartbeat advances;
4. a MosixJob (``testload``) is applied with ``kubectl apply -f``, placed on the node, listed by ``mosps -A`` and
   counted by ``mosctl status`` while it runs, and reaches phase Succeeded with exit code 0; its output (kept by
   the agent under its state folder) is read with ``mosix logs`` from the agent's user API (the kubeconfig's
   credentials checked by the API server: no pods/exec);
5. ``helm uninstall`` leaves no mosix pods behind.

Each step's time is printed (never asserted). One thing of this machine, not of the chart, is prepared first:

* the agent mounts its state folder (hostPath) with Bidirectional propagation, so the job rootfs overlays it mounts
  outlive the pod; the kubelet allows that only on a shared mount. Every systemd host (and kind node) has ``/``
  shared; this machine's ``/`` is private, so the folder is made a shared bind mount of itself for the test (as a
  node's setup would), and unmounted afterwards.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import docker
import pytest
import yaml

from mosix import images

from .conftest import CHART, REPO, Helm, unavailable

if TYPE_CHECKING:
    from tests.realkube import Kube

pytestmark = [pytest.mark.realcluster, pytest.mark.docker]

RELEASE = "mosix"
NAMESPACE = "mosix-install"  # the release's
JOBS_NAMESPACE = "mosix-install-jobs"
TAG = "install-test"
JOB = "install-check"
LINES = 40  # testload -n LINES -d DELAY: an idle counter, long enough to be seen running
DELAY = 0.25
BIN = pathlib.Path(sys.executable).parent  # the venv's console scripts (mosps, mosctl)

Say = Callable[[str], None]


class Steps:
    """Times each step and prints it at once (uncaptured), and the whole list at the end."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.done: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        self.done.append((what, took))
        self.say(f"install: {what}: {took:.1f} s")

    def summary(self) -> str:
        width = max((len(w) for w, _ in self.done), default=0)
        return "\n".join(f"  {w.ljust(width)}  {t:7.1f} s" for w, t in self.done)


def wait_until(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """probe() until it returns something truthy; fails naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})", pytrace=False)


def cluster_script() -> pathlib.Path:
    """shared/k8s/cluster (``$MOSIX_SHARED`` else the shared folder beside the repository), as realkube finds it."""
    shared = pathlib.Path(os.environ.get("MOSIX_SHARED") or REPO.parent / "shared")
    return shared / "k8s" / "cluster"


def propagation(path: pathlib.Path) -> tuple[str, str]:
    """(mount point, propagation) of the mount holding path."""
    out = subprocess.run(["findmnt", "-n", "-o", "TARGET,PROPAGATION", "--target", str(path)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1]


@contextlib.contextmanager
def shared_mount(path: pathlib.Path, say: Say) -> Iterator[None]:
    """path on a shared mount for the duration (a shared bind mount of itself if it is not), then as it was."""
    path.mkdir(parents=True, exist_ok=True)
    _, prop = propagation(path)
    if prop.startswith("shared"):
        yield
        return
    say(f"install: {path} is on a {prop} mount; making it a shared bind mount for the agent's Bidirectional "
        "hostPath")
    subprocess.run(["mount", "--rbind", str(path), str(path)], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "--make-shared", str(path)], check=True, capture_output=True)
        yield
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
        if done.returncode != 0:  # mounts below it (other sessions' jobs): leave the harmless self-bind in place
            say(f"install: left the bind mount on {path} in place: {done.stderr.strip()}")


def load_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def chart_values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def cli(kube: Kube, name: str, *args: str, kubeconfig: pathlib.Path | None = None) -> str:
    """One of the project's commands (mosps, mosctl) against the cluster, by --kubeconfig; its stdout."""
    done = subprocess.run([str(BIN / name), *args, "--kubeconfig", str(kubeconfig or kube.kubeconfig)],
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{name} {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def client_certificate_kubeconfig(kube: Kube, folder: pathlib.Path, user: str, group: str) -> pathlib.Path | None:
    """A kubeconfig whose user is a client certificate (CN user, O group) signed by the cluster's client CA, as
    kubeadm's admin.conf is; None for a cluster given from outside (its CA key is not ours)."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = kube.dir / "pki" if kube.dir is not None else None
    if pki is None or not (pki / "ca.key").is_file():
        return None
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)), type(ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, group)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["users"] = [{"name": user, "user": {
        "client-certificate-data": base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode(),
        "client-key-data": base64.b64encode(key_pem).decode()}}]
    for context in config["contexts"]:
        context["context"]["user"] = user
    path = folder / f"{user}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def crd_names(kube: Kube) -> set[str]:
    items = load_json(kube.kubectl("get", "crd", "-o", "json", check=True))["items"]
    return {str(i["metadata"]["name"]) for i in items
            if str(i["spec"]["group"]) in ("mosix.dev", "kopf.dev")}


def mosix_pods(kube: Kube) -> list[str]:
    """Pods of the release (its namespace) or labelled part-of mosix anywhere."""
    found = set()
    for selector in (["-n", NAMESPACE], ["-A", "-l", "app.kubernetes.io/part-of=mosix"]):
        done = kube.kubectl("get", "pods", *selector, "-o", "json", check=True)
        found |= {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in load_json(done)["items"]}
    return sorted(found)


@pytest.fixture
def say(capsys: pytest.CaptureFixture[str]) -> Say:
    def write(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    return write


@pytest.fixture
def prepared(kube_cluster: Kube, say: Say) -> Iterator[Kube]:
    """The cluster with the agent's state folder on a shared mount."""
    if kube_cluster.dir is None:
        unavailable("the real install needs the single-node cluster started here (its images are loaded into its "
                    "containerd with shared/k8s/cluster load)")
    if os.geteuid() != 0:
        unavailable("the real install needs root (shared/k8s/cluster load, the agent's host folder)")
    if not cluster_script().is_file():
        unavailable(f"no {cluster_script()}")
    with shared_mount(pathlib.Path(chart_values()["agent"]["hostPaths"]["state"]), say):
        yield kube_cluster


LEFTOVER_KINDS = ("mosixnodes.mosix.dev", "mosixclusters.mosix.dev", "clusterkopfpeerings.kopf.dev")


def leftovers(kube: Kube) -> dict[str, list[str]]:
    """Cluster-scoped objects the running system made (not helm), each with its finalizers."""
    found: dict[str, list[str]] = {}
    for kind in LEFTOVER_KINDS:
        done = kube.kubectl("get", kind, "-o", "json")
        if done.returncode == 0:
            for item in json.loads(done.stdout)["items"]:
                found[f"{kind}/{item['metadata']['name']}"] = list(item["metadata"].get("finalizers", []))
    return found


@pytest.fixture
def cleanup(prepared: Kube, helm: Helm, say: Say) -> Iterator[None]:
    """Whatever happens: the release uninstalled, the test's namespaces and the objects it left removed."""
    kube = prepared
    crds_before = crd_names(kube)
    yield
    start = time.monotonic()
    kube.kubectl("delete", "mosixjobs", "--all", "-n", JOBS_NAMESPACE, "--ignore-not-found", "--timeout=60s")
    helm.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig", str(kube.kubeconfig),
             "--ignore-not-found", "--wait", "--timeout=120s", timeout=180)
    # Made at run time, not by helm: the agent's MosixNode, the operator's default MosixCluster, Kopf's peering.
    # The operator takes its finalizer off as it stops; should a failed run leave one, drop it, as an admin would.
    for ref, finalizers in leftovers(kube).items():
        if finalizers:
            kube.kubectl("patch", ref, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        kube.kubectl("delete", ref, "--ignore-not-found", "--wait=false")
    kube.kubectl("delete", "namespace", NAMESPACE, JOBS_NAMESPACE, "--ignore-not-found", "--wait=false")
    new_crds = sorted(crd_names(kube) - crds_before)  # helm keeps CRDs; leave the cluster's as they were
    if new_crds:
        kube.kubectl("delete", "crd", *new_crds, "--ignore-not-found", "--timeout=60s")
    say(f"install: cleanup (namespaces, leftovers, CRDs {new_crds}): {time.monotonic() - start:.1f} s")


@pytest.mark.timeout(2400)
def test_helm_install_runs_a_job_on_the_real_cluster(prepared: Kube, cleanup: None, *, helm: Helm,
                                                     docker_client: docker.DockerClient, say: Say,
                                                     tmp_path: pathlib.Path) -> None:
    kube = prepared
    steps = Steps(say)
    kc = str(kube.kubeconfig)
    try:
        _install_and_run(kube, kc, helm, docker_client, steps=steps, say=say, tmp_path=tmp_path)
    finally:
        say("install: timings\n" + steps.summary())


def _install_and_run(kube: Kube, kc: str, helm: Helm, docker_client: docker.DockerClient, *, steps: Steps,
                     say: Say, tmp_path: pathlib.Path) -> None:
    # 1. images, built as `python -m mosix.images --local-base --tag TAG` does, then loaded into the cluster
    with steps.step("build both images (mosix.images, local base)"):
        built = images.build_all(docker_client, local_base=True, tag=TAG, extra_ca=images.extra_ca_certs(),
                                 say=say)
    refs = {b.name: b.tag for b in built}
    for b in built:
        say(f"install: built {b.tag} from {b.base} in {b.seconds:.1f} s")
    with steps.step("shared/k8s/cluster load (both images)"):
        done = subprocess.run([str(cluster_script()), "load", *refs.values()], capture_output=True, text=True,
                              timeout=900, check=False, env=kube.env(), stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"cluster load failed: {done.stderr}"

    # 2. helm install, overriding only the images
    sets = []
    for name in ("operator", "agent"):
        repository, _, tag = refs[name].rpartition(":")
        sets += ["--set", f"{name}.image.repository={repository}", "--set", f"{name}.image.tag={tag}",
                 "--set", f"{name}.image.pullPolicy=Never"]
    with steps.step("helm install"):
        helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
                 "--kubeconfig", kc, *sets, check=True, timeout=300)
    say(f"install: helm install {RELEASE} charts/mosix --namespace {NAMESPACE} --create-namespace "
        + " ".join(sets))

    # 3. pods Ready, the MosixNode and its heartbeat
    with steps.step("operator Deployment rolled out (2 pods Ready)"):
        kube.kubectl("rollout", "status", "-n", NAMESPACE, "deployment/mosix-operator", "--timeout=300s",
                     check=True, timeout=330)
    with steps.step("agent DaemonSet rolled out (its pod Ready)"):
        kube.kubectl("rollout", "status", "-n", NAMESPACE, "daemonset/mosix-agent", "--timeout=300s",
                     check=True, timeout=330)
    pods = load_json(kube.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json", check=True))["items"]
    ready = {p["metadata"]["name"]: all(c.get("ready") for c in p["status"].get("containerStatuses", []))
             for p in pods}
    say(f"install: pods {ready}")
    agents = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "agent"]
    operators = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    assert len(agents) == 1 and len(operators) == 2 and all(ready.values()), ready
    agent_pod = agents[0]["metadata"]["name"]
    node_name = agents[0]["spec"]["nodeName"]

    def heartbeat() -> str | None:
        done = kube.kubectl("get", "mosixnode", node_name, "-o", "json")
        if done.returncode != 0:
            return None
        beat = json.loads(done.stdout).get("status", {}).get("heartbeat")
        return str(beat) if beat else None

    with steps.step(f"MosixNode {node_name} with a heartbeat"):
        first = wait_until(f"MosixNode {node_name} with status.heartbeat", heartbeat, 120)
    with steps.step("its heartbeat advances"):
        second = wait_until("a newer heartbeat", lambda: (h := heartbeat()) != first and h, 120)
    assert datetime.datetime.fromisoformat(second) > datetime.datetime.fromisoformat(first), (first, second)
    mosix_node = load_json(kube.kubectl("get", "mosixnode", node_name, "-o", "json", check=True))
    say(f"install: MosixNode {node_name}: spec {mosix_node['spec']}, state {mosix_node['status'].get('state')!r}, "
        f"heartbeat {first} -> {second}")
    assert mosix_node["spec"]["address"] == agents[0]["status"]["podIP"]

    # 4. a MosixJob, applied with kubectl apply -f
    manifest = tmp_path / "mosixjob.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "mosix.dev/v1alpha1", "kind": "MosixJob", "metadata": {"name": JOB},
        "spec": {"image": "mosix/testload:local", "command": ["testload", "-n", str(LINES), "-d", str(DELAY)],
                 "placement": "Best"}}))
    kube.kubectl("create", "namespace", JOBS_NAMESPACE, check=True)

    def job() -> dict[str, Any]:
        return dict(load_json(kube.kubectl("get", "mosixjob", JOB, "-n", JOBS_NAMESPACE, "-o", "json", check=True)))

    with steps.step("kubectl apply -f mosixjob.yaml"):
        kube.kubectl("apply", "-n", JOBS_NAMESPACE, "-f", str(manifest), check=True)
    with steps.step("job Running on the node"):
        running = wait_until("the job Running", lambda: (j := job())["status"].get("phase") in
                             ("Running", "Succeeded", "Failed") and j, 180, every=0.2)
    say(f"install: job status {running['status']}")
    assert running["status"]["phase"] == "Running", running["status"]
    assert running["status"]["node"] == node_name

    with steps.step("mosps -A / mosctl status while it runs"):
        mosps = cli(kube, "mosps", "-A", "--namespace", JOBS_NAMESPACE)
        status = cli(kube, "mosctl", "status", node_name)
    say(f"install: mosps -A --namespace {JOBS_NAMESPACE} --kubeconfig {kc}\n{mosps}")
    say(f"install: mosctl status {node_name} --kubeconfig {kc}\n{status}")
    assert any(JOB in line and node_name in line for line in mosps.splitlines()[1:]), mosps
    assert "Status: Running Normally" in status and "Avail: YES" in status, status

    with steps.step("job Succeeded"):
        finished = wait_until("the job finished", lambda: (j := job())["status"].get("phase") in
                              ("Succeeded", "Failed") and j, 300, every=0.5)
    say(f"install: job status {finished['status']}")
    assert finished["status"]["phase"] == "Succeeded", finished["status"]
    assert finished["status"]["exitCode"] == 0
    assert finished["status"]["node"] == node_name
    state = chart_values()["agent"]["hostPaths"]["state"]
    stdout = cli(kube, "mosix", "logs", JOB, "--namespace", JOBS_NAMESPACE)
    assert stdout.split() == [str(i) for i in range(LINES)], stdout
    say(f"install: mosix logs {JOB}: {LINES} lines 0..{LINES - 1}, as its home node's agent keeps them")
    # The same with a client certificate instead of a token: the agent verifies it against the cluster's client CA
    # (kube-system/extension-apiserver-authentication), then asks for a SubjectAccessReview of its user.
    by_cert = client_certificate_kubeconfig(kube, tmp_path, "mosix-install-admin", "system:masters")
    if by_cert is None:
        say("install: mosix logs by client certificate: not tried (the cluster's CA key is not ours)")
    else:
        assert cli(kube, "mosix", "logs", JOB, "--namespace", JOBS_NAMESPACE, kubeconfig=by_cert) == stdout
        say(f"install: mosix logs {JOB} by a client certificate of the cluster's client CA: the same {LINES} lines")
    after = cli(kube, "mosps", "-A", "--namespace", JOBS_NAMESPACE)
    assert JOB not in after, after  # mosps lists live processes only

    with steps.step("kubectl delete the job (the agent removes its container)"):
        kube.kubectl("delete", "mosixjob", JOB, "-n", JOBS_NAMESPACE, "--timeout=120s", check=True, timeout=150)
    containers = kube.kubectl("exec", "-n", NAMESPACE, agent_pod, "-c", "agent", "--", "runc", "--root",
                              f"{state}/runc", "list", "-q", check=True).stdout.split()
    assert f"{JOBS_NAMESPACE}.{JOB}" not in containers, containers

    # 5. helm uninstall leaves no pods
    with steps.step("helm uninstall"):
        helm.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig", kc, check=True, timeout=180)
    with steps.step("no mosix pods left"):
        wait_until("no mosix pods", lambda: not mosix_pods(kube), 180)
    left = leftovers(kube)
    say(f"install: left after uninstall, made by the running system, not helm (object: finalizers): {left}")
    assert not any(left.values()), f"finalizers hold objects nobody runs for any more: {left}"

