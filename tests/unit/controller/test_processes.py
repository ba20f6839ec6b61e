"""Gangs (-P) and commands files (-S) through control rounds over a real local store: admissions become
per-process entries, agents' reports (patched here as the agents patch them) become the job's summary."""

from __future__ import annotations

import datetime
import pathlib

import pytest

from mosix.api import job, meta, node
from mosix.client import client, local
from mosix.controller import round, views


@pytest.fixture
def api(tmp_path: pathlib.Path) -> client.Client:
    store = local.LocalStore(tmp_path)
    store.init()
    api = client.Client(store)
    for n in (1, 2, 3):
        body = node.MosixNode(metadata=meta.ObjectMeta(name=f"node{n}"),
                              spec=node.MosixNodeSpec(number=n, address=f"127.0.0.{n}")).wire()
        store.create(node.MosixNode, body)
        beat(api, n)
    return api


def beat(api: client.Client, n: int, load: float = 0.0, age: float = 0.0) -> None:
    when = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age)).isoformat()
    api.store.patch(node.MosixNode, f"node{n}", {"status": {
        "state": "Running Normally", "heartbeat": when, "cpus": 1, "speed": 1000, "load": load,
        "accept": True, "avail": True, "memory": {"availableMb": 4000, "totalMb": 8000}}}, status=True)


def report(api: client.Client, name: str, index: str, phase: job.Phase, code: int | None = None) -> None:
    """What the agent on the process's node writes: only its own entry of the map."""
    fields: dict[str, object] = {"phase": phase.value}
    if phase == job.Phase.RUNNING:
        fields["startTime"] = meta.now_rfc3339()
    if phase.finished:
        fields |= {"exitCode": code, "completionTime": meta.now_rfc3339()}
    api.patch_job_status(name, {"processes": {index: fields}})


def gang(api: client.Client, n: int = 3) -> str:
    spec = {"command": ["testload"], "parallel": n, "queue": {}}
    return api.submit(job.MosixJobSpec.model_validate(spec)).name


def commands(api: client.Client, lines: int, most: int) -> str:
    spec = {"commands": {"maxRunning": most, "lines": [["echo", str(i)] for i in range(lines)]}}
    return api.submit(job.MosixJobSpec.model_validate(spec)).name


def test_a_gang_is_released_as_one_process_per_node(api: client.Client) -> None:
    name = gang(api)
    outcome = round.run_round(api)
    st = api.get_job(name).status
    assert st.phase == job.Phase.PENDING
    assert sorted(st.processes) == ["0", "1", "2"]
    assert sorted(p.node or "" for p in st.processes.values()) == ["node1", "node2", "node3"]
    assert {p.phase for p in st.processes.values()} == {job.Phase.PENDING}
    assert [e.reason for e in outcome.plan.events] == ["Placed"]
    assert st.node == st.processes["0"].node and st.home_node == st.node


def test_a_gang_is_never_partly_released(api: client.Client) -> None:
    beat(api, 2, load=1.0)  # node 2's one CPU is taken
    name = gang(api)
    round.run_round(api)
    st = api.get_job(name).status
    assert (st.phase, st.processes, st.message) == (job.Phase.QUEUED, {}, "waiting: GangIncomplete")
    beat(api, 2, load=0.0)
    round.run_round(api)
    assert len(api.get_job(name).status.processes) == 3


def test_the_gang_runs_when_its_processes_run_and_succeeds_when_all_did(api: client.Client) -> None:
    name = gang(api)
    round.run_round(api)
    for i in "012":
        report(api, name, i, job.Phase.RUNNING)
    round.run_round(api)
    st = api.get_job(name).status
    assert st.phase == job.Phase.RUNNING and st.start_time is not None
    assert st.where == "node1,node2,node3"
    report(api, name, "0", job.Phase.SUCCEEDED, 0)
    report(api, name, "2", job.Phase.SUCCEEDED, 0)
    round.run_round(api)
    assert api.get_job(name).status.phase == job.Phase.RUNNING  # one still runs
    report(api, name, "1", job.Phase.SUCCEEDED, 0)
    outcome = round.run_round(api)
    st = api.get_job(name).status
    assert (st.phase, st.exit_code, st.where) == (job.Phase.SUCCEEDED, 0, "done")
    assert [e.message for e in outcome.plan.events if e.reason == "Succeeded"] == ["all 3 processes succeeded"]


def test_a_gang_fails_with_the_first_failure_named(api: client.Client) -> None:
    name = gang(api)
    round.run_round(api)
    for i in "012":
        report(api, name, i, job.Phase.RUNNING)
    report(api, name, "2", job.Phase.FAILED, 3)
    report(api, name, "0", job.Phase.FAILED, 9)
    report(api, name, "1", job.Phase.SUCCEEDED, 0)
    round.run_round(api)
    st = api.get_job(name).status
    node2 = api.get_job(name).status.processes["2"].node
    assert (st.phase, st.exit_code) == (job.Phase.FAILED, 3)
    assert st.message == f"process 2 failed on {node2}: exit code 3"


def test_a_commands_file_runs_at_most_max_lines_and_the_next_as_one_finishes(api: client.Client) -> None:
    name = commands(api, lines=5, most=2)
    round.run_round(api)
    assert sorted(api.get_job(name).status.processes) == ["0", "1"]
    report(api, name, "0", job.Phase.RUNNING)
    report(api, name, "1", job.Phase.RUNNING)
    round.run_round(api)
    st = api.get_job(name).status
    assert (sorted(st.processes), st.running_lines, st.finished_lines) == (["0", "1"], 2, 0)
    report(api, name, "1", job.Phase.SUCCEEDED, 0)
    round.run_round(api)
    assert sorted(api.get_job(name).status.processes) == ["0", "1", "2"]
    for started, ends in (("2", "0"), ("3", "2")):  # each finished line lets exactly one more start
        report(api, name, started, job.Phase.RUNNING)
        report(api, name, ends, job.Phase.SUCCEEDED, 0)
        round.run_round(api)
        st = api.get_job(name).status
        assert len(st.processes) == int(started) + 2
        assert len([p for p in st.processes.values() if not p.phase.finished]) == 2
    report(api, name, "4", job.Phase.RUNNING)
    report(api, name, "3", job.Phase.SUCCEEDED, 0)
    report(api, name, "4", job.Phase.SUCCEEDED, 0)
    round.run_round(api)
    st = api.get_job(name).status
    assert sorted(st.processes) == ["0", "1", "2", "3", "4"]
    assert (st.phase, st.exit_code, st.running_lines, st.finished_lines) == (job.Phase.SUCCEEDED, 0, 0, 5)


def test_moving_a_whole_gang_is_refused_and_a_dead_node_fails_it(api: client.Client) -> None:
    name = gang(api, n=2)
    round.run_round(api)
    for i in "01":
        report(api, name, i, job.Phase.RUNNING)
    round.run_round(api)
    api.patch_job(name, {"migration": {"to": "node3", "serial": 1}})
    outcome = round.run_round(api)
    st = api.get_job(name).status
    assert (st.target_node, st.observed_migration_serial) == (None, 1)
    assert "MigrationRefused" in [e.reason for e in outcome.plan.events]
    lost = st.processes["1"].node
    assert lost is not None
    beat(api, int(lost.removeprefix("node")), age=3600)
    round.run_round(api)
    st = api.get_job(name).status
    assert st.phase == job.Phase.FAILED
    assert st.message == f"process 1 was on node {lost}, which died, and it had no checkpoint"


def test_rounds_are_level_triggered(api: client.Client) -> None:
    name = commands(api, lines=3, most=3)
    round.run_round(api)
    for i in "012":
        report(api, name, i, job.Phase.RUNNING)
    round.run_round(api)
    before = api.get_job(name).status
    round.run_round(api)
    assert api.get_job(name).status == before


def test_an_overloaded_node_freezes_single_lines_and_continues_them(api: client.Client) -> None:
    name = commands(api, lines=6, most=6)
    api.patch_job(name, {"placement": "Node", "node": "1", "locked": True})  # locked: the balancer cannot move them
    round.run_round(api)
    assert {p.node for p in api.get_job(name).status.processes.values()} == {"node1"}
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=100)
    started = {str(i): (old + datetime.timedelta(seconds=i)).isoformat() for i in range(6)}
    api.patch_job_status(name, {"processes": {i: {"phase": "Running", "startTime": t} for i, t in started.items()}})
    beat(api, 1, load=6.0)  # over the default limit of 4 per CPU by two processes
    outcome = round.run_round(api)
    st = api.get_job(name).status
    assert {i: p.frozen for i, p in st.processes.items() if p.frozen} == {
        "4": job.FreezeReason.AUTO, "5": job.FreezeReason.AUTO}
    assert sorted(e.message for e in outcome.plan.events if e.reason == "FreezeDecided") == [
        "freeze process 4 (Auto)", "freeze process 5 (Auto)"]
    api.patch_job_status(name, {"processes": {"4": {"phase": "Frozen"}, "5": {"phase": "Frozen"}}})
    beat(api, 1, load=3.0)
    round.run_round(api)
    st = api.get_job(name).status
    assert [i for i, p in st.processes.items() if p.frozen] == ["5"]  # room for one: the oldest continues


def test_a_checkpoint_request_is_done_once_every_live_process_did_it(api: client.Client) -> None:
    name = gang(api, n=3)
    round.run_round(api)
    for i in "012":
        report(api, name, i, job.Phase.RUNNING)
    report(api, name, "2", job.Phase.SUCCEEDED, 0)  # finished before the request: nothing to checkpoint
    api.patch_job(name, {"checkpointRequest": {"after": "Continue", "serial": 1}})
    api.patch_job_status(name, {"processes": {"0": {"observedCheckpointSerial": 1, "checkpoint": "/c/a.1"}}})
    round.run_round(api)
    assert api.get_job(name).status.observed_checkpoint_serial == 0  # process 1 has not checkpointed yet
    api.patch_job_status(name, {"processes": {"1": {"observedCheckpointSerial": 1, "checkpoint": "/c/b.1"}}})
    round.run_round(api)
    assert api.get_job(name).status.observed_checkpoint_serial == 1


def test_a_gang_whose_processes_all_checkstopped_is_stopped(api: client.Client) -> None:
    name = gang(api, n=2)
    round.run_round(api)
    report(api, name, "0", job.Phase.RUNNING)
    report(api, name, "1", job.Phase.STOPPED)
    round.run_round(api)
    assert api.get_job(name).status.phase == job.Phase.RUNNING
    report(api, name, "0", job.Phase.STOPPED)
    round.run_round(api)
    assert api.get_job(name).status.phase == job.Phase.STOPPED


def test_a_line_that_ended_before_any_round_saw_it_run_still_lets_the_next_start(api: client.Client) -> None:
    name = commands(api, lines=2, most=1)
    round.run_round(api)
    report(api, name, "0", job.Phase.SUCCEEDED, 0)  # started and ended between two rounds
    round.run_round(api)
    st = api.get_job(name).status
    assert st.phase == job.Phase.RUNNING and st.finished_lines == 1
    round.run_round(api)
    assert sorted(api.get_job(name).status.processes) == ["0", "1"]


# --- one process at a time: requests (spec.processes), the balancer's moves, recovery -------------------------


def running_gang(api: client.Client, n: int = 2) -> str:
    name = gang(api, n=n)
    round.run_round(api)
    for i in range(n):
        report(api, name, str(i), job.Phase.RUNNING)
    round.run_round(api)
    return name


def test_migrate_one_process_sets_its_target_once_per_serial(api: client.Client) -> None:
    name = running_gang(api)
    where = api.get_job(name).status.processes["1"].node
    to = next(n for n in ("node1", "node2", "node3") if n != where)
    api.patch_job(name, {"processes": {"1": {"migration": {"to": to, "serial": 1}}}})
    outcome = round.run_round(api)
    st = api.get_job(name).status
    assert (st.processes["1"].target_node, st.processes["1"].observed_migration_serial) == (to, 1)
    assert (st.processes["0"].target_node, st.target_node) == (None, None)  # its sibling and the job stay
    assert [e.message for e in outcome.plan.events if e.reason == "MigrationRequested"] == [
        f"migrate process 1 to {to} (requested)"]
    # what the agent writes once the process runs there; a later round does not ask again
    api.patch_job_status(name, {"processes": {"1": {"node": to, "targetNode": None, "migrations": 1}}})
    again = round.run_round(api)
    assert api.get_job(name).status.processes["1"].target_node is None
    assert "MigrationRequested" not in [e.reason for e in again.plan.events]
    assert api.get_job(name).status.where == ",".join(sorted({st.processes["0"].node or "", to}))
    # home: the job's home node; a process already there is only marked done
    api.patch_job(name, {"processes": {"1": {"migration": {"to": "home", "serial": 2}}}})
    round.run_round(api)
    home = api.get_job(name).status.home_node
    proc = api.get_job(name).status.processes["1"]
    assert proc.observed_migration_serial == 2
    assert proc.target_node == (home if home != to else None)


def test_a_request_to_a_process_not_started_yet_waits_for_it(api: client.Client) -> None:
    name = commands(api, lines=3, most=1)
    round.run_round(api)
    api.patch_job(name, {"processes": {"2": {"migration": {"to": "node3", "serial": 1}}}})
    round.run_round(api)
    assert "2" not in api.get_job(name).status.processes  # nothing written for a line not started
    report(api, name, "0", job.Phase.RUNNING)
    round.run_round(api)
    assert api.get_job(name).status.processes["0"].observed_migration_serial == 0


def test_a_process_that_finished_only_marks_the_request_done(api: client.Client) -> None:
    name = running_gang(api)
    report(api, name, "0", job.Phase.SUCCEEDED, 0)
    api.patch_job(name, {"processes": {"0": {"migration": {"to": "node3", "serial": 1}}}})
    round.run_round(api)
    proc = api.get_job(name).status.processes["0"]
    assert (proc.observed_migration_serial, proc.target_node) == (1, None)


def test_an_unmigratable_gang_refuses_a_process_move(api: client.Client) -> None:
    name = running_gang(api)
    api.patch_job_status(name, {"migratable": False, "unsupportedReason": "perf_event"})
    api.patch_job(name, {"processes": {"1": {"migration": {"to": "node3", "serial": 1}}}})
    outcome = round.run_round(api)
    proc = api.get_job(name).status.processes["1"]
    assert (proc.target_node, proc.observed_migration_serial) == (None, 1)
    assert proc.message == "cannot migrate: perf_event"
    assert "MigrationRefused" in [e.reason for e in outcome.plan.events]


def test_freeze_and_continue_one_process(api: client.Client) -> None:
    name = running_gang(api)
    api.patch_job(name, {"processes": {"0": {"frozen": True}}})
    outcome = round.run_round(api)
    st = api.get_job(name).status
    assert (st.processes["0"].frozen, st.processes["1"].frozen, st.frozen) == (job.FreezeReason.MANUAL, None, None)
    assert [e.message for e in outcome.plan.events if e.reason == "FreezeRequested"] == ["freeze process 0 (requested)"]
    report(api, name, "0", job.Phase.FROZEN)
    round.run_round(api)
    assert api.get_job(name).status.processes["0"].frozen == job.FreezeReason.MANUAL  # the user's to continue
    api.patch_job(name, {"processes": {"0": {"frozen": False}}})
    outcome = round.run_round(api)
    assert api.get_job(name).status.processes["0"].frozen is None
    assert [e.message for e in outcome.plan.events if e.reason == "ContinueRequested"] == [
        "continue process 0 (requested)"]


def test_the_balancer_moves_a_single_process_off_a_crowded_node(api: client.Client) -> None:
    name = commands(api, lines=2, most=2)
    api.patch_job(name, {"placement": "Node", "node": "1"})
    round.run_round(api)
    assert {p.node for p in api.get_job(name).status.processes.values()} == {"node1"}
    old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=300)).isoformat()
    api.patch_job_status(name, {"processes": {i: {"phase": "Running", "startTime": old} for i in "01"}})
    beat(api, 1, load=2.0)
    outcome = round.run_round(api)
    st = api.get_job(name).status
    moving = {i: p.target_node for i, p in st.processes.items() if p.target_node}
    assert len(moving) == 1 and next(iter(moving.values())) in ("node2", "node3")  # one moves, its sibling stays
    (index, to), = moving.items()
    assert [e.message for e in outcome.plan.events if e.reason == "MigrationDecided"] == [
        f"migrate process {index} node1 → {to} (Load)"]


def test_a_process_lost_with_its_node_restarts_from_its_checkpoint_elsewhere(api: client.Client) -> None:
    name = running_gang(api)
    lost = api.get_job(name).status.processes["1"].node
    assert lost is not None
    sets = [{"name": "/c/g_1.1", "time": meta.now_rfc3339()}]  # on storage every node reads
    api.patch_job_status(name, {"processes": {"1": {"checkpoints": sets, "checkpoint": "/c/g_1.1"}}})
    beat(api, int(lost.removeprefix("node")), age=3600)
    outcome = round.run_round(api)
    st = api.get_job(name).status
    proc = st.processes["1"]
    assert st.phase != job.Phase.FAILED
    assert (proc.phase, proc.restore_from) == (job.Phase.PENDING, "/c/g_1.1")
    assert proc.node not in (None, lost)
    assert [e.message for e in outcome.plan.events if e.reason == "Recovering"] == [
        f"node {lost} died; restarting process 1 on {proc.node} from /c/g_1.1"]
    assert st.processes["0"].phase == job.Phase.RUNNING


def test_a_process_about_to_move_counts_on_its_target_and_a_moved_one_as_arrived() -> None:
    """Until the nodes' reported load shows them, a process moving (targetNode) counts where it goes, and one
    that just moved counts where it arrived, so consecutive rounds do not send everything to one idle node."""
    now = datetime.datetime.now(datetime.UTC)
    old, recent = (now - datetime.timedelta(seconds=300)).isoformat(), (now - datetime.timedelta(seconds=2)).isoformat()
    spec = job.MosixJobSpec.model_validate({"command": ["testload"], "parallel": 3, "queue": {}})
    j = job.MosixJob(spec=spec, status=job.MosixJobStatus.model_validate({"phase": "Running", "processes": {
        "0": {"node": "node1", "phase": "Running", "startTime": old, "targetNode": "node2"},
        "1": {"node": "node3", "phase": "Running", "startTime": old, "lastMigrationTime": recent},
        "2": {"node": "node1", "phase": "Running", "startTime": old}}}))
    assert views.arrivals({"g": j}, now.timestamp()) == {"node2": 1, "node3": 1}


def test_a_process_move_to_a_blocked_node_is_refused_and_home_is_not(api: client.Client) -> None:
    """A process away from home is asked to a third node, blocked: refused with why. Its home, blocked as
    well, still takes it back (a job going home is no guest)."""
    name = running_gang(api)  # one process per node: at least one of the two runs away from home
    st = api.get_job(name).status
    index, proc = next((i, p) for i, p in sorted(st.processes.items()) if p.node != st.home_node)
    third = next(n for n in ("node1", "node2", "node3") if n not in (st.home_node, proc.node))
    for n in (st.home_node, third):
        api.store.patch(node.MosixNode, str(n), {"spec": {"block": True}})
    api.patch_job(name, {"processes": {index: {"migration": {"to": third, "serial": 1}}}})
    outcome = round.run_round(api)
    refused = api.get_job(name).status.processes[index]
    assert (refused.target_node, refused.observed_migration_serial) == (None, 1)
    assert refused.message == f"cannot migrate: node {third} is blocked"
    assert [e.message for e in outcome.plan.events if e.reason == "MigrationRefused"] == [
        f"process {index} cannot migrate: node {third} is blocked"]
    api.patch_job(name, {"processes": {index: {"migration": {"to": "home", "serial": 2}}}})
    round.run_round(api)
    assert api.get_job(name).status.processes[index].target_node == st.home_node
