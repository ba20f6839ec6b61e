"""A job's output as its home node keeps it: read it whole, or follow it live (mosrun, mosix logs)."""

from __future__ import annotations

import pathlib
import sys
import time
from typing import BinaryIO

from mosix.api import job
from mosix.cli import usage
from mosix.client import client, local

STREAMS = ("stdout", "stderr")


def home_files(api: client.Client, j: job.MosixJob) -> dict[str, pathlib.Path] | None:
    """Where the home agent keeps the job's output, on the local cluster; None before it has a home."""
    if not isinstance(api.store, local.LocalStore):
        raise usage.Refused("reading a job's output is available on the local cluster only so far "
                            "(on Kubernetes it is kept by the home node's agent)")
    home = j.status.home_node or j.spec.home_node
    if home is None:
        return None
    root = api.store.state_dir / "nodes" / home / "home" / api.key(j).replace("/", ".")
    return {s: root / s for s in STREAMS}


def _copy(path: pathlib.Path, offset: int, out: BinaryIO) -> int:
    if not path.exists():
        return offset
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    if data:
        out.write(data)
        out.flush()
    return offset + len(data)


def follow(api: client.Client, name: str, *, until_finished: bool = True, poll: float = 0.2) -> job.MosixJob:
    """Copies the job's output to our stdout and stderr as it arrives home; returns the job once it
    finished (the agent marks it finished only when home has all of its output)."""
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    offsets = dict.fromkeys(STREAMS, 0)
    while True:
        current = api.get_job(name)
        files = home_files(api, current)
        if files is not None:
            for stream, path in files.items():
                offsets[stream] = _copy(path, offsets[stream], sinks[stream])
        if current.status.phase.finished or not until_finished:
            if files is not None:  # what arrived between the read and the status
                for stream, path in files.items():
                    offsets[stream] = _copy(path, offsets[stream], sinks[stream])
            return current
        time.sleep(poll)
