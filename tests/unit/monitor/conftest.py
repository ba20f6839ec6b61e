"""A local cluster in a temporary folder with three nodes: two alive (fresh heartbeats), one dead."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest

from mosix.api import cluster, meta, node
from mosix.client import client, local
from mosix.monitor import views

GB = 1024


def stamp(when: datetime.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def statuses(now: datetime.datetime) -> dict[str, dict[str, Any]]:
    """Wire-form statuses: mos1 busy, mos2 idle with guests, mos3 silent for an hour (dead)."""
    return {
        "mos1": {
            "state": "Running Normally", "load": 1.5, "speed": 10000, "cpus": 4, "frozen": 2, "util": 90,
            "avail": True, "procs": 3, "accept": True,
            "memory": {"availableMb": 2 * GB, "totalMb": 8 * GB}, "swap": {"availableMb": 3 * GB, "totalMb": 4 * GB},
            "guests": {"running": 1, "max": 10}, "localProcs": 2,
            "readKbps": 120.0, "writeKbps": 30.0, "netInKbps": 800.0, "netOutKbps": 200.0,
            "version": "0.1.0", "bootTime": stamp(now - datetime.timedelta(days=3, hours=4)), "heartbeat": stamp(now),
        },
        "mos2": {
            "state": "Blocked", "load": 0.25, "speed": 8000, "cpus": 2, "frozen": 0, "util": 40,
            "avail": True, "procs": 1, "accept": False,
            "memory": {"availableMb": 6 * GB, "totalMb": 8 * GB}, "swap": {"availableMb": 1 * GB, "totalMb": 2 * GB},
            "guests": {"running": 3, "max": 4}, "localProcs": 0,
            "readKbps": 10.0, "writeKbps": 5.0, "netInKbps": 50.0, "netOutKbps": 60.0,
            "version": "0.1.0", "bootTime": stamp(now - datetime.timedelta(hours=5)), "heartbeat": stamp(now),
        },
        "mos3": {
            "state": "Running Normally", "load": 3.0, "cpus": 4, "memory": {"availableMb": GB, "totalMb": 4 * GB},
            "heartbeat": stamp(now - datetime.timedelta(hours=1)),
        },
    }  # fmt: skip


def nodes(now: datetime.datetime) -> list[node.MosixNode]:
    """The same three nodes as objects, for the pure view tests."""
    return [
        node.MosixNode.model_validate(
            {
                "metadata": {"name": name},
                "spec": {"number": number, "address": f"10.0.0.{number}"},
                "status": status,
            }
        )
        for number, (name, status) in enumerate(statuses(now).items(), start=1)
    ]


DEAD_AFTER = 600.0  # generous, so slow machines do not see the live nodes die; mos3 is an hour silent


def make_store(state: pathlib.Path, now: datetime.datetime) -> local.LocalStore:
    store = local.LocalStore(state)
    store.init()
    config = cluster.MosixCluster(spec=cluster.MosixClusterSpec(dead_after_seconds=DEAD_AFTER))
    store.create(cluster.MosixCluster, config.wire())
    for n in nodes(now):
        body = node.MosixNode(metadata=meta.ObjectMeta(name=n.name), spec=n.spec).wire()
        store.create(node.MosixNode, body)
        store.patch(node.MosixNode, n.name, {"status": n.status.wire()}, status=True)
    return store


@pytest.fixture
def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, now: datetime.datetime) -> pathlib.Path:
    """$MOSIX_STATE pointing at a local cluster holding the three nodes; HOME away from the user's ~/.mmon.cfg."""
    path = tmp_path / "state"
    make_store(path, now)
    monkeypatch.setenv("MOSIX_STATE", str(path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MOSIX_KUBECONFIG", raising=False)
    return path


@pytest.fixture
def snap(now: datetime.datetime) -> views.Snapshot:
    """The three nodes as the monitor reads them, at `now`."""
    return views.Snapshot(tuple(nodes(now)), now, DEAD_AFTER)


@pytest.fixture
def api(state: pathlib.Path) -> client.Client:
    return client.Client(local.LocalStore(state))
