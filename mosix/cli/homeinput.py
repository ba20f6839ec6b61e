"""mosrun -i: the terminal's standard input, handed to the job's home node, which keeps it for the
agent running the job (wherever that is) to feed the job's stdin; EOF here ends the job's input.

On the local cluster the home agent's folder is on this machine; on Kubernetes the input goes to the
home agent's user API with the user's own credentials (homeagent.py; RBAC: create mosixjobs/input).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from mosix.api import job
from mosix.cli import homeagent, usage
from mosix.client import client, local

CHUNK = 32768  # per write

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
    agent = homeagent.HomeAgent(api, j, home)

    def write(data: bytes | None) -> None:
        if data is None:
            agent.call("POST", "input", {"end": 1}, b"")
        else:
            agent.call("POST", "input", {}, data)

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
