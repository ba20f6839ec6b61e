"""Queue order, mosq operations and admission."""

from __future__ import annotations

import pytest

from mosix.policy import decisions, ledger, queue, snapshot

Q = snapshot.JobState.QUEUED
R = snapshot.JobState.RUNNING


def node(number: int, *, cpus: int = 1, load: float = 0.0, free: int = 4000, **kw: object) -> snapshot.NodeView:
    return snapshot.NodeView(name=f"n{number}", number=number, address=f"10.0.0.{number}", cpus=cpus,
                             load=load, memory_free_mb=free, memory_total_mb=8000, **kw)  # type: ignore[arg-type]


def job(name: str, position: int = 0, **kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {"placement": snapshot.PlacementKind.BEST, "home": "n1"}
    fields.update(kw)
    return snapshot.JobView(name=name, position=position, **fields)  # type: ignore[arg-type]


def names(jobs: list[snapshot.JobView]) -> list[str]:
    return [j.name for j in jobs]


def snap(nodes: list[snapshot.NodeView], jobs: list[snapshot.JobView], **kw: object) -> snapshot.Snapshot:
    return snapshot.Snapshot(tuple(nodes), tuple(jobs), snapshot.ClusterView(**kw), 100.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("jobs", "expected"), [
    ([job("a", 2), job("b", 1)], ["b", "a"]),
    ([job("a", 1, priority=60), job("b", 2)], ["b", "a"]),
    ([job("a", 1), job("b", 2, priority=20)], ["b", "a"]),
    ([job("a", 1), job("b", 1, submitted=0), job("c", 1, submitted=-1)], ["c", "a", "b"]),
    ([job("b", 1), job("a", 1)], ["a", "b"]),
    ([job("a", 1), job("b", 2, run_now=True)], ["b", "a"]),
    ([job("a", 1), job("r", 0, state=R)], ["a"]),
])
def test_order(jobs: list[snapshot.JobView], expected: list[str]) -> None:
    assert names(queue.order(jobs)) == expected


def test_tutorial_cngpri_example() -> None:
    """mosq cngpri 20 21155 puts the job ahead of the earlier pri-50 job."""
    jobs = [job("21666", 1, state=R), job("21667", 2), job("21155", 3)]
    assert names(queue.order(jobs)) == ["21667", "21155"]
    jobs[2] = queue.cngpri(jobs[2], 20)
    assert names(queue.order(jobs)) == ["21155", "21667"]


def test_advance_and_retard_stay_within_the_priority_group() -> None:
    jobs = [job("a", 1, priority=20), job("b", 2), job("c", 3), job("d", 4), job("e", 5, priority=60)]
    advanced = [j if j.name != "d" else job("d", queue.advance(jobs, "d")) for j in jobs]
    assert names(queue.order(advanced)) == ["a", "d", "b", "c", "e"]
    retarded = [j if j.name != "b" else job("b", queue.retard(jobs, "b")) for j in jobs]
    assert names(queue.order(retarded)) == ["a", "c", "d", "b", "e"]


def test_advance_of_the_head_changes_nothing() -> None:
    jobs = [job("a", 1), job("b", 2)]
    assert queue.advance(jobs, "a") == 1
    assert queue.retard(jobs, "b") == 2


def test_run_and_delete() -> None:
    jobs = [job("a", 1), job("b", 2)]
    assert names(queue.order([jobs[0], queue.run(jobs[1])])) == ["b", "a"]
    assert names(list(queue.delete(jobs, "a"))) == ["b"]


@pytest.mark.parametrize("operation", [
    lambda jobs: queue.advance(jobs, "missing"),
    lambda jobs: queue.retard(jobs, "r"),
    lambda jobs: queue.delete(jobs, "r"),
    lambda jobs: queue.cngpri(jobs[0], -1),
    lambda jobs: queue.cngpri(jobs[0], 70000),
    lambda jobs: queue.run(jobs[1]),
])
def test_bad_operations_are_refused(operation: object) -> None:
    jobs = [job("a", 1), job("r", 2, state=R)]
    with pytest.raises(queue.QueueError):
        operation(jobs)  # type: ignore[operator]


def test_admits_in_order_while_slots_last() -> None:
    out = queue.admit(snap([node(1), node(2)], [job("c", 3), job("a", 1), job("b", 2)]))
    assert [(a.job, a.reason) for a in out] == [("a", decisions.AdmitReason.QUEUE),
                                                ("b", decisions.AdmitReason.QUEUE)]
    assert sorted(n for a in out for n in a.nodes) == ["n1", "n2"]


def test_run_now_bypasses_slots() -> None:
    out = queue.admit(snap([node(1, load=1)], [job("a", 1), job("b", 2, run_now=True)]))
    assert [(a.job, a.reason) for a in out] == [("b", decisions.AdmitReason.RUN_NOW)]


def test_direct_jobs_start_without_slots() -> None:
    direct = job("d", 1, queued=False, state=snapshot.JobState.PENDING)
    out = queue.admit(snap([node(1, load=3), node(2, load=5)], [direct]))
    assert [(a.job, a.nodes, a.reason) for a in out] == [("d", ("n1",), decisions.AdmitReason.DIRECT)]


def test_gang_waits_for_all_slots_and_holds_them() -> None:
    nodes = [node(1), node(2), node(3, load=1)]
    jobs = [job("gang", 1, parallel=3), job("small", 2)]
    admissions, waits = queue.admit_into(ledger.Ledger(snap(nodes, jobs)))
    assert admissions == []
    assert [(w.job, w.reason) for w in waits] == [("gang", decisions.WaitReason.GANG)]


def test_gang_is_admitted_whole() -> None:
    out = queue.admit(snap([node(1, cpus=2), node(2)], [job("gang", 1, parallel=3)]))
    assert [(a.job, sorted(a.nodes)) for a in out] == [("gang", ["n1", "n1", "n2"])]


def test_gang_larger_than_the_cluster_does_not_block() -> None:
    out = queue.admit(snap([node(1)], [job("huge", 1, parallel=5), job("small", 2)]))
    assert [a.job for a in out] == ["small"]


def test_memory_need_passes_over_to_the_next_job() -> None:
    nodes = [node(1, free=500), node(2, free=500)]
    out = queue.admit(snap(nodes, [job("big", 1, memory_mb=1000), job("small", 2, memory_mb=100)]))
    assert [a.job for a in out] == ["small"]


def test_commands_file_runs_at_most_max_lines() -> None:
    nodes = [node(1, cpus=8)]
    first = queue.admit(snap(nodes, [job("s", 1, commands_max=3, commands_total=10)]))
    assert [(a.job, len(a.nodes), a.first_line) for a in first] == [("s", 3, 0)]
    running = job("s", 1, state=R, node="n1", commands_max=3, commands_total=10, commands_started=5,
                  commands_running=2)
    more = queue.admit(snap([node(1, cpus=8, load=2)], [running]))
    assert [(a.job, len(a.nodes), a.first_line, a.reason) for a in more] == [
        ("s", 1, 5, decisions.AdmitReason.LINES)]


def test_commands_file_lines_start_as_slots_allow() -> None:
    out = queue.admit(snap([node(1, cpus=2)], [job("s", 1, commands_max=5, commands_total=5)]))
    assert [(a.job, len(a.nodes)) for a in out] == [("s", 2)]


def test_max_running_caps_queued_jobs() -> None:
    nodes = [node(1, cpus=4, load=1)]
    jobs = [job("r", 0, state=R, node="n1"), job("a", 1), job("b", 2)]
    out = queue.admit(snap(nodes, jobs, max_running=2))
    assert [a.job for a in out] == ["a"]


def test_explicit_node_waits_for_its_node() -> None:
    nodes = [node(1, load=1), node(2)]
    jobs = [job("pinned", 1, placement=snapshot.PlacementKind.NODE, node_ref="1"), job("free", 2)]
    out = queue.admit(snap(nodes, jobs))
    assert [(a.job, a.nodes) for a in out] == [("free", ("n2",))]


def test_gang_from_home_spreads_over_the_best_nodes() -> None:
    gang = job("gang", 1, parallel=2, placement=snapshot.PlacementKind.HOME)
    out = queue.admit(snap([node(1), node(2)], [gang]))
    assert [(a.job, sorted(a.nodes)) for a in out] == [("gang", ["n1", "n2"])]
