"""A job an agent found CRIU cannot checkpoint: one Event, its moves and freezes refused, never balanced away."""

from __future__ import annotations

import datetime
import pathlib

import pytest

from mosix.api import job, meta, node
from mosix.client import client, local
from mosix.controller import round

REASON = "fd 3 is anon_inode:[perf_event]"


@pytest.fixture
def api(tmp_path: pathlib.Path) -> client.Client:
    store = local.LocalStore(tmp_path)
    store.init()
    beat = datetime.datetime.now(datetime.UTC).isoformat()
    for n, load in ((1, 3.0), (2, 0.0)):
        store.create(
            node.MosixNode,
            node.MosixNode(
                metadata=meta.ObjectMeta(name=f"node{n}"), spec=node.MosixNodeSpec(number=n, address=f"127.0.0.{n}")
            ).wire(),
        )
        store.patch(
            node.MosixNode,
            f"node{n}",
            {
                "status": {
                    "state": "Running Normally",
                    "heartbeat": beat,
                    "cpus": 1,
                    "speed": 1000,
                    "load": load,
                    "accept": True,
                    "avail": True,
                    "memory": {"availableMb": 4000, "totalMb": 8000},
                }
            },
            status=True,
        )
    return client.Client(store)


def _running_on_busy_node(api: client.Client, migratable: bool, **spec: object) -> str:
    """Three jobs on a loaded node1 beside an idle node2: the balancer wants to move one."""
    names = []
    for _ in range(3):
        name = api.submit(job.MosixJobSpec.model_validate({"command": ["testload"], **spec})).name
        api.patch_job_status(
            name,
            {
                "phase": "Running",
                "node": "node1",
                "homeNode": "node1",
                "where": "node1",
                "startTime": "2020-01-01T00:00:00Z",
                "migratable": migratable,
                "unsupportedReason": None if migratable else REASON,
            },
        )
        names.append(name)
    return names[0]


def test_one_event_says_why_and_what_happens(api: client.Client) -> None:
    name = _running_on_busy_node(api, migratable=False, unsupported="Warn")
    first = round.run_round(api)
    said = [e for e in first.plan.events if e.reason == "UnsupportedFeature" and e.job == name]
    assert len(said) == 1 and said[0].warning and REASON in said[0].message and "-w" in said[0].message
    condition = api.get_job(name).status.conditions
    assert [(c.type, c.status, c.reason, c.message) for c in condition] == [
        ("Migratable", "False", "UnsupportedFeature", REASON)
    ]
    again = round.run_round(api)
    assert not [e for e in again.plan.events if e.reason == "UnsupportedFeature"]


@pytest.mark.parametrize("migratable", [True, False])
def test_the_balancer_moves_only_migratable_jobs(api: client.Client, migratable: bool) -> None:
    _running_on_busy_node(api, migratable=migratable)
    decided = [e for e in round.run_round(api).plan.events if e.reason == "MigrationDecided"]
    assert bool(decided) == migratable
    assert any(j.status.target_node for j in api.jobs()) == migratable


def test_requested_moves_and_freezes_are_refused(api: client.Client) -> None:
    name = _running_on_busy_node(api, migratable=False, unsupported="Continue")
    api.store.patch(job.MosixJob, name, {"spec": {"frozen": True, "migration": {"to": "node2", "serial": 1}}})
    outcome = round.run_round(api)
    status = api.get_job(name).status
    assert status.target_node is None and status.frozen is None
    assert status.observed_migration_serial == 1 and status.message == f"cannot migrate: {REASON}"
    assert any(e.reason == "MigrationRefused" and e.job == name for e in outcome.plan.events)
