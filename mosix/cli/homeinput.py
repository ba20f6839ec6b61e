"""mosrun -i: the terminal's standard input, handed to the job's home node, which keeps it for the
agent running the job (wherever that is) to feed the job's stdin; EOF here ends the job's input.

On the local cluster the home agent's folder is on this machine; on Kubernetes the input is written
in the home node's agent pod, through the API server (the user needs pods/exec there, as for output).
"""

from __future__ import annotations

import base64
import os
import shlex
import sys
import time
from collections.abc import Callable

from mosix.api import job
from mosix.cli import logs, usage
from mosix.client import client, local

CHUNK = 32768  # per write; on Kubernetes it travels base64-encoded inside one exec's command line

Writer = Callable[[bytes | None], None]  # bytes: more input; None: the input ended


def _local_writer(api: client.Client, store: local.LocalStore, j: job.MosixJob, home: str) -> Writer:
    from mosix.agent import homeio  # the home agent runs on this machine

    kept = homeio.HomeOutput(store.state_dir / "nodes" / home / "home")
    key = api.key(j)

    def write(data: bytes | None) -> None:
        if data is None:
            kept.end_input(key)
        else:
            kept.add_input(key, data)

    return write


def _kube_writer(api: client.Client, j: job.MosixJob, home: str) -> Writer:
    from kubernetes import client as k8s
    from kubernetes import stream as k8s_stream

    core = k8s.CoreV1Api(getattr(api.store, "api").api_client)  # noqa: B009  (the KubeStore's CustomObjectsApi)
    pod_name, pod_namespace = logs.agent_pod(core, j, home)
    folder = shlex.quote(f"{logs.AGENT_STATE}/home/{j.metadata.namespace}.{j.name}")

    def write(data: bytes | None) -> None:
        if data is None:
            script = f"mkdir -p -m 700 {folder} && touch {folder}/stdin {folder}/stdin.end"
        else:
            encoded = base64.b64encode(data).decode()
            script = f"mkdir -p -m 700 {folder} && printf %s {encoded} | base64 -d >> {folder}/stdin"
        k8s_stream.stream(
            core.connect_get_namespaced_pod_exec,
            pod_name,
            pod_namespace,
            container="agent",
            command=["sh", "-c", script],
            stderr=False,
            stdin=False,
            stdout=True,
            tty=False,
        )

    return write


def writer(api: client.Client, j: job.MosixJob) -> Writer | None:
    """How to hand input to the job's home; None before it has a home."""
    home = j.status.home_node or j.spec.home_node
    if home is None:
        return None
    if isinstance(api.store, local.LocalStore):
        return _local_writer(api, api.store, j, home)
    return _kube_writer(api, j, home)


def forward(api: client.Client, name: str, source: int | None = None, poll: float = 0.2) -> None:
    """Copies our standard input (or fd `source`) to the job's home until EOF, then ends the job's input.
    Waits for the job to have a home first (it may be queued); stops early if the job finished."""
    fd = sys.stdin.fileno() if source is None else source
    write: Writer | None = None
    while write is None:
        current = api.get_job(name)
        if current.status.phase.finished:
            return
        write = writer(api, current)
        if write is None:
            time.sleep(poll)
    while True:
        data = os.read(fd, CHUNK)
        try:
            write(data or None)
        except usage.Refused:
            raise
        except Exception as e:  # the job may be gone: its input no longer matters
            if api.get_job(name).status.phase.finished:
                return
            raise usage.Refused(f"-i: the input of {name} could not reach its home: {e}") from e
        if not data:
            return
