"""MOSIX objects as a user (jobs) and agents (nodes, job status) write them, for the operator tests."""

from __future__ import annotations

import datetime
from typing import Any

from mosix.api import cluster

NAMESPACE = "research"
DEAD_AFTER = 600.0  # long: a fresh heartbeat stays fresh however slowly a test runs


def stamp(ago: float = 0.0) -> str:
    """An RFC 3339 time `ago` seconds before now."""
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ago)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def mosix_cluster(**spec: Any) -> dict[str, Any]:
    """The MosixCluster `default` made before the operator starts (which then keeps it as it is)."""
    body = cluster.MosixCluster().wire()
    body["spec"].update({"deadAfterSeconds": DEAD_AFTER, **spec})
    del body["status"]  # the control plane's to write
    return body


def node(number: int, *, alive: bool = True, memory_mb: int = 4000) -> dict[str, Any]:
    """A node as its agent reports it; a dead one last reported a day ago."""
    return {
        "metadata": {"name": f"node{number}"},
        "spec": {"number": number, "address": f"127.0.0.{number}"},
        "status": {"state": "Running Normally", "heartbeat": stamp(0 if alive else 86400), "cpus": 1,
                   "speed": 1000, "load": 0.0, "accept": True, "avail": True,
                   "memory": {"availableMb": memory_mb, "totalMb": 2 * memory_mb}},
    }


def job(name: str, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A job as mosrun submits it (`testload` unless told otherwise), with the status its agent reported."""
    body = {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"command": ["testload"], **spec}}
    return body if status is None else {**body, "status": status}


def running_on(where: str, *checkpoints: dict[str, Any]) -> dict[str, Any]:
    """A job status as the agent on `where` reports a running job, with its checkpoint sets."""
    return {"phase": "Running", "node": where, "where": where, "homeNode": where, "startTime": stamp(60),
            "checkpoints": list(checkpoints)}


def checkpoint(name: str, where: str) -> dict[str, Any]:
    return {"name": name, "node": where, "time": stamp(30), "sizeBytes": 4096}


CLEANED = {"type": "Cleaned", "status": "True", "reason": "Stopped",
           "message": "containers stopped, checkpoints removed"}  # the agent's word that a deleted job may go
