"""What the operator sets up once at startup and every handler then uses: settings, client, metrics."""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import logging
import os
import socket
import threading
from wsgiref import simple_server

import kopf
import prometheus_client
from kubernetes import client as k8s

from mosix.api import meta
from mosix.client import client
from mosix.controller.operator import credentials

KEY = "mosix"
PEERING = "mosix"
FINALIZER = f"{meta.GROUP}/cleanup"
METRICS_PORT = 9340

log = logging.getLogger("mosix.operator")

MetricsServer = tuple[simple_server.WSGIServer, threading.Thread]


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Kept in Kopf's memo: the client over all namespaces and its connections, who we are, the metrics server."""

    api: client.Client
    kube: k8s.ApiClient
    leader: str
    metrics: MetricsServer | None = None


def configure(settings: kopf.OperatorSettings) -> None:
    """Peering `mosix` (unless the command line named one), Events for decisions only, state in
    `mosix.dev` annotations: our status schema has no room for Kopf's, and the models refuse it."""
    if not settings.peering.mandatory:
        settings.peering.name = PEERING
    if not settings.peering.priority:
        settings.peering.priority = replica_priority(identity())
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    settings.posting.reporting_component = "mosix-operator"
    settings.posting.event_name_prefix = "mosix-"
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=meta.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=meta.GROUP)


def replica_priority(who: str) -> int:
    """A distinct peering priority per replica, from its identity: Kopf pauses every peer of equal
    priority, so replicas given none would all stand by; this way the highest-ranked one leads."""
    return int(hashlib.sha256(who.encode()).hexdigest()[:7], 16) + 1


def identity() -> str:
    """Who leads: the pod (POD_ID, as Kopf's peering names it), else user@host."""
    return os.environ.get("POD_ID") or f"{getpass.getuser()}@{socket.gethostname()}"


def start_metrics() -> MetricsServer | None:
    """Prometheus on $MOSIX_METRICS_PORT (default 9340, 0: off) and $MOSIX_METRICS_ADDRESS (default all)."""
    port = int(os.environ.get("MOSIX_METRICS_PORT", str(METRICS_PORT)))
    if not port:
        return None
    address = os.environ.get("MOSIX_METRICS_ADDRESS", "0.0.0.0")
    try:
        server = prometheus_client.start_http_server(port, addr=address)
    except OSError as e:  # metrics are auxiliary: say so loudly, keep controlling
        log.error("metrics server not started on %s:%d: %s", address, port, e)
        return None
    log.info("metrics on http://%s:%d/metrics", address, port)
    return server


def stop(runtime: Runtime) -> None:
    """Releases the metrics port and the API connections."""
    if runtime.metrics is not None:
        server, thread = runtime.metrics
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    credentials.close(runtime.kube)


def of(memo: kopf.Memo) -> Runtime:
    """The runtime the startup handler left in the memo."""
    found = memo.get(KEY)
    if not isinstance(found, Runtime):
        raise kopf.TemporaryError("the operator has not finished starting", delay=1)
    return found
