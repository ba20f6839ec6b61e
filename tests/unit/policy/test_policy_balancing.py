"""Load balancing and memory ushering."""

from __future__ import annotations

import pytest

from mosix.policy import balancing, decisions, snapshot

NOW = 1000.0


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def running(name: str, on: str = "n1", **kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {"state": snapshot.JobState.RUNNING, "node": on, "home": "n1",
                                 "started_at": NOW - 100.0}
    fields.update(kw)
    return snapshot.JobView(name=name, **fields)  # type: ignore[arg-type]


def moves(nodes: list[snapshot.NodeView], jobs: list[snapshot.JobView],
          **kw: object) -> list[tuple[str, str, str, decisions.MigrationReason]]:
    cluster = snapshot.ClusterView(**kw)  # type: ignore[arg-type]
    out = balancing.balance(snapshot.Snapshot(tuple(nodes), tuple(jobs), cluster, NOW))
    return [(m.job, m.source, m.target, m.reason) for m in out]


LOAD = decisions.MigrationReason.LOAD


def test_spreads_an_overloaded_node() -> None:
    got = moves([node(1, load=3), node(2), node(3)], [running("a"), running("b"), running("c")])
    assert sorted((m[1], m[2]) for m in got) == [("n1", "n2"), ("n1", "n3")]
    assert all(m[3] is LOAD for m in got)


def test_moves_to_a_faster_idle_node() -> None:
    assert moves([node(1, load=1), node(2, speed=2.0)], [running("a")]) == [("a", "n1", "n2", LOAD)]


def test_no_move_below_min_gain() -> None:
    assert moves([node(1, load=1), node(2, speed=1.1)], [running("a")], min_gain=0.2) == []


def test_no_move_that_crowds_a_busy_node() -> None:
    """Joining a node that is just as fast and busy gains nothing for anyone."""
    assert moves([node(1, load=1), node(2, load=1)], [running("a"), running("b", on="n2")]) == []


@pytest.mark.parametrize("job", [
    running("a", locked=True),
    running("a", migratable=False),
    running("a", last_migration=NOW - 10.0),  # within the 30 s hysteresis
    running("a", started_at=NOW - 0.5),  # too young: the move would not pay for itself
    running("a", parallel=2),
    running("a", commands_max=2),
    running("a", state=snapshot.JobState.FROZEN),
])
def test_jobs_that_never_move(job: snapshot.JobView) -> None:
    assert moves([node(1, load=1), node(2, speed=4.0)], [job]) == []


def test_a_young_job_moves_when_that_frees_its_cpu_for_an_old_one() -> None:
    """The time saved counts every job the move touches, not only the mover."""
    jobs = [running("old", locked=True, started_at=NOW - 500.0), running("young", started_at=NOW)]
    assert moves([node(1, load=2), node(2)], jobs) == [("young", "n1", "n2", LOAD)]


def test_after_the_hysteresis_it_may_move() -> None:
    job = running("a", last_migration=NOW - 31.0)
    assert moves([node(1, load=1), node(2, speed=4.0)], [job]) == [("a", "n1", "n2", LOAD)]


def test_cost_scales_with_memory() -> None:
    big = running("a", started_at=NOW - 5.0, memory_mb=20000)
    small = running("a", started_at=NOW - 5.0)
    nodes = [node(1, load=1), node(2, speed=4.0, memory_free_mb=30000)]
    assert moves(nodes, [big]) == []
    assert moves(nodes, [small]) == [("a", "n1", "n2", LOAD)]


def test_hint_overrides_age() -> None:
    job = running("a", started_at=NOW - 1000.0, expected_remaining_s=0.5)
    assert moves([node(1, load=1), node(2, speed=4.0)], [job]) == []


def test_dead_or_blocked_targets_are_never_chosen() -> None:
    nodes = [node(1, load=2), node(2, alive=False, speed=9.0), node(3, block=True, speed=9.0), node(4)]
    got = moves(nodes, [running("a"), running("b")])
    assert [m[2] for m in got] == ["n4"]


def test_memory_ushering_moves_the_biggest_first() -> None:
    nodes = [node(1, load=2, memory_free_mb=100), node(2, load=2, memory_free_mb=8000)]
    jobs = [running("small", memory_mb=200), running("big", memory_mb=3000), running("x", on="n2"),
            running("y", on="n2")]
    got = moves(nodes, jobs, memory_reserve_mb=256)
    assert got == [("big", "n1", "n2", decisions.MigrationReason.MEMORY)]


def test_each_job_moves_at_most_once_per_round() -> None:
    nodes = [node(1, load=6)] + [node(i, speed=float(i)) for i in range(2, 6)]
    got = moves(nodes, [running(f"j{i}") for i in range(6)])
    assert len({m[0] for m in got}) == len(got)


def test_busy_nodes_are_levelled_as_mosix_does() -> None:
    """3/2/1 CPU-bound processes on three equal one-CPU nodes: every node is busy, so moving saves no
    CPU time, but node1's jobs would finish last; one of them moves to node3 (MOSIX levels the load)."""
    from mosix.policy import decide, snapshot

    nodes = tuple(snapshot.NodeView(name=f"node{i}", number=i, cpus=1, speed=25000, load=load,
                                    memory_free_mb=20000, memory_total_mb=24000, procs=int(load))
                  for i, load in ((1, 3.0), (2, 2.0), (3, 1.0)))
    placed = (("a", "node3", 975.0), ("b", "node2", 976.0), ("c", "node2", 977.0),
              ("d", "node1", None), ("e", "node1", None), ("f", "node1", None))
    jobs = tuple(snapshot.JobView(name=n, state=snapshot.JobState.RUNNING, queued=False, node=where, home="node1",
                                  started_at=972.0, last_migration=moved) for n, where, moved in placed)
    moves = decide.decide(snapshot.Snapshot(nodes=nodes, jobs=jobs, now=1000.0)).migrations
    assert [(m.source, m.target) for m in moves] == [("node1", "node3")]
