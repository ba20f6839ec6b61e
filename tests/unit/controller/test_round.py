"""One control round over a real local store: placement, queue, requests become desired status."""

from __future__ import annotations

import datetime
import pathlib

import pytest

from mosix.api import cluster, job, meta, node
from mosix.client import client, local
from mosix.controller import round, views
from mosix.policy import decide


@pytest.fixture
def api(tmp_path: pathlib.Path) -> client.Client:
    store = local.LocalStore(tmp_path)
    store.init()
    api = client.Client(store)
    beat = datetime.datetime.now(datetime.UTC).isoformat()
    for n in (1, 2, 3):
        body = node.MosixNode(metadata=meta.ObjectMeta(name=f"node{n}"),
                              spec=node.MosixNodeSpec(number=n, address=f"127.0.0.{n}")).wire()
        store.create(node.MosixNode, body)
        store.patch(node.MosixNode, f"node{n}", {"status": {
            "state": "Running Normally", "heartbeat": beat, "cpus": 1, "speed": 1000, "load": 0.0,
            "accept": True, "avail": True, "memory": {"availableMb": 4000, "totalMb": 8000}}}, status=True)
    return api


def _submit(api: client.Client, **spec: object) -> str:
    return api.submit(job.MosixJobSpec.model_validate({"command": ["testload"], **spec})).name


def test_best_jobs_spread_over_the_nodes(api: client.Client) -> None:
    names = [_submit(api, placement="Best") for _ in range(3)]
    outcome = round.run_round(api)
    placed = {n: api.get_job(n).status for n in names}
    assert {s.node for s in placed.values()} == {"node1", "node2", "node3"}
    assert all(s.phase == job.Phase.PENDING for s in placed.values())
    assert {e.reason for e in outcome.plan.events} == {"Placed"}


def test_explicit_node_and_unknown_node(api: client.Client) -> None:
    there = _submit(api, placement="Node", node="2")
    nowhere = _submit(api, placement="Node", node="mos9")
    round.run_round(api)
    assert api.get_job(there).status.node == "node2"
    stuck = api.get_job(nowhere).status
    assert stuck.node is None and stuck.message == "waiting: NoNode"


def test_queue_respects_memory_and_positions(api: client.Client) -> None:
    big = _submit(api, queue={"priority": 10}, memoryMb=100000)
    small = _submit(api, queue={})
    round.run_round(api)
    assert api.get_job(small).status.phase == job.Phase.PENDING
    waiting = api.get_job(big).status
    assert (waiting.phase, waiting.where, waiting.priority) == (job.Phase.QUEUED, "queue", 10)


def test_a_new_default_priority_is_shown_on_every_waiting_job_without_its_own(api: client.Client) -> None:
    """Waiting jobs no round maps again (unchanged) still get the new default as their priority in force."""
    own, default = _submit(api, queue={"priority": 7}, memoryMb=100000), _submit(api, queue={}, memoryMb=100000)
    round.run_round(api)
    assert (api.get_job(own).status.priority, api.get_job(default).status.priority) == (7, 50)
    round.run_round(api)
    conf = cluster.MosixCluster.model_validate({"metadata": {"name": cluster.DEFAULT_NAME},
                                                "spec": {"queue": {"defaultPriority": 70}}})
    api.store.create(cluster.MosixCluster, conf.wire())
    outcome = round.run_round(api)
    assert set(outcome.plan.patches) == {default}
    assert (api.get_job(own).status.priority, api.get_job(default).status.priority) == (7, 70)


def test_requests_become_desired_state(api: client.Client) -> None:
    name = _submit(api, placement="Node", node="1")
    round.run_round(api)
    api.patch_job_status(name, {"phase": "Running"})
    api.patch_job(name, {"migration": {"to": "node3", "serial": 1}, "frozen": True})
    round.run_round(api)
    status = api.get_job(name).status
    assert (status.target_node, status.observed_migration_serial, status.frozen) == (
        "node3", 1, job.FreezeReason.MANUAL)
    round.run_round(api)  # level-triggered: repeating changes nothing
    assert api.get_job(name).status == status



def test_a_move_to_a_node_that_blocks_guests_is_refused_and_home_is_not(api: client.Client) -> None:
    """mosctl block on node3: `migrate {id} 3` is refused with why; the job's blocked home takes it back."""
    name = _submit(api, placement="Node", node="2", homeNode="node1")
    round.run_round(api)
    api.patch_job_status(name, {"phase": "Running", "homeNode": "node1"})
    for n in ("node1", "node3"):
        api.store.patch(node.MosixNode, n, {"spec": {"block": True}})
    api.patch_job(name, {"migration": {"to": "node3", "serial": 1}})
    outcome = round.run_round(api)
    status = api.get_job(name).status
    assert (status.target_node, status.observed_migration_serial) == (None, 1)
    assert status.message == "cannot migrate: node node3 is blocked"
    assert [e.message for e in outcome.plan.events if e.reason == "MigrationRefused"] == [status.message]
    api.patch_job(name, {"migration": {"to": "home", "serial": 2}})
    round.run_round(api)
    assert api.get_job(name).status.target_node == "node1"

@pytest.mark.parametrize(("stay", "rate", "goes_home"), [(False, 4096.0, True), (True, 4096.0, False),
                                                         (False, 10.0, False)])
def test_io_heavy_job_away_is_brought_home(api: client.Client, stay: bool, rate: float, goes_home: bool) -> None:
    """The agent's published remote I/O rate (what crosses the link) reaches the policy through the views;
    -c keeps the job away, and so does I/O that stays local (a high ioRateKbps with little remote)."""
    name = _submit(api, placement="Node", node="2", stayOnSyscalls=stay)
    round.run_round(api)
    started = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=120)).isoformat()
    api.patch_job_status(name, {"phase": "Running", "homeNode": "node1", "startTime": started,
                                "ioRateKbps": 4096.0, "remoteIoKbps": rate})
    outcome = round.run_round(api)
    assert (api.get_job(name).status.target_node == "node1") is goes_home
    assert any(e.reason == "MigrationDecided" and "(IO)" in e.message for e in outcome.plan.events) is goes_home


def test_a_round_plans_for_the_changed_jobs_what_it_would_plan_for_every_job(api: client.Client) -> None:
    """The per-job passes visit only the jobs changed or patched since the last round; a plan over every
    job, from views mapped afresh, is the same."""
    names = [_submit(api, placement="Node", node=str(n)) for n in (1, 2, 3)] + [
        _submit(api, queue={}, memoryMb=100000), _submit(api, queue={"priority": 9}, memoryMb=100000)]  # they wait
    for _ in range(2):
        round.run_round(api)
    for name in names[:3]:
        api.patch_job_status(name, {"phase": "Running"})
    round.run_round(api)
    api.patch_job(names[1], {"migration": {"to": "node3", "serial": 1}})
    api.patch_job(names[2], {"frozen": True})
    _submit(api, queue={"priority": 1}, memoryMb=100000)  # first in the queue
    api.patch_job(names[4], {"queue": {"priority": 2}})  # mosq cngpri: the priority shown changes
    for turn in range(3):
        by_name = {api.key(j): j for j in api.jobs()}
        conf = api.get_cluster()
        kept = round.job_views(api)
        snap = views.snapshot_of(by_name, api.nodes(), conf, 1e9, kept)
        result = decide.decide(snap)
        fresh = views.JobViews()
        fresh.mapped(by_name)
        every = round.plan_round(by_name, snap, result, conf.spec.queue.default_priority, fresh)
        changed = round.plan_round(by_name, snap, result, conf.spec.queue.default_priority, kept)
        assert changed.patches == every.patches
        assert sorted(changed.events, key=lambda e: e.job) == sorted(every.events, key=lambda e: e.job)
        assert set(kept.changed(by_name)) == set(changed.patches)  # what it patched, visited next round
        round.apply_plan(api.patch_job_status, by_name, changed, kept)
        if turn == 0:  # priority and where shown: the jobs need not be mapped nor visited again
            assert {e.reason for e in every.events} >= {"MigrationRequested", "FreezeRequested"}
            assert set(kept.changed(by_name)) < set(changed.patches)
