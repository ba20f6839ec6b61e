"""On Kubernetes, a job's output and input are kept by its home node's agent: reach its user API
(mosix/agent/userapi.py) with the user's own Kubernetes credentials (the kubeconfig's bearer token or
client certificate), which the agent has the API server check. No pods/exec on the agent pod needed.

The agent's address, user port and the CA of its serving certificate are in its MosixNode.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from typing import Any

from mosix.api import job
from mosix.cli import usage
from mosix.client import client

CHUNK = 1 << 20  # the most the agent answers at once (its homeio.CHUNK): a shorter answer is the end


class HomeAgent:
    """The user API of the agent of node `home`, for job `j`; one kept-alive connection."""

    def __init__(self, api: client.Client, j: job.MosixJob, home: str) -> None:
        n = api.get_node(home)
        if not n.spec.user_port or not n.spec.serving_ca:
            raise usage.Refused(f"the agent of node {home}, which keeps the I/O of {j.name}, serves no user API "
                                "(it publishes no userPort and servingCa in its MosixNode)")
        self.home, self.address, self.port = home, n.spec.address, n.spec.user_port
        self.base = f"/namespaces/{j.metadata.namespace}/mosixjobs/{j.name}"
        config: Any = getattr(api.store, "api").api_client.configuration  # noqa: B009  (the KubeStore's client)
        self.context = ssl.create_default_context(cadata=n.spec.serving_ca)
        # The chain must lead to the cluster CA, which certifies agents only; the name is not checked because
        # the chart gives every agent one certificate and users reach agents by pod IP.
        self.context.check_hostname = False
        if config.cert_file:
            self.context.load_cert_chain(config.cert_file, config.key_file)
        self.config = config
        self.conn: http.client.HTTPSConnection | None = None

    def _headers(self) -> dict[str, str]:
        bearer = self.config.auth_settings().get("BearerToken")  # refreshed (exec plugins, expiring tokens)
        return {"Authorization": str(bearer["value"])} if bearer and bearer.get("value") else {}

    def call(self, method: str, what: str, query: dict[str, Any], body: bytes | None = None) -> bytes:
        """One request to the job's `what` (log or input); a refusal (401, 403, 404) is usage.Refused."""
        return self.request(method, what, query, body)[0]

    def request(self, method: str, what: str, query: dict[str, Any],
                body: bytes | None = None) -> tuple[bytes, http.client.HTTPResponse]:
        """`call`, with the response (its headers)."""
        path = f"{self.base}/{what}?{urllib.parse.urlencode(query)}"
        for attempt in (1, 2):  # a kept-alive connection the agent closed: once more on a new one
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.address, self.port, context=self.context, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=self._headers())
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                if attempt == 2 or isinstance(e, ssl.SSLCertVerificationError):
                    raise usage.Refused(f"cannot reach the agent of node {self.home} at "
                                        f"{self.address}:{self.port}: {e}") from e
        if resp.status != 200:
            try:
                message = str(json.loads(data)["error"])
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace")
            raise usage.Refused(f"the agent of node {self.home} refused: {message} (HTTP {resp.status})")
        return data, resp
