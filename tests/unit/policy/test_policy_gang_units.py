"""Each process of a gang (-P) or commands file (-S) is a process of its own for migration and recovery,
as in MOSIX: the balancer weighs and moves one process at a time (with the gain, cost and hysteresis of
a single job, kept per process), and a process lost with its node restarts from its own newest checkpoint
elsewhere, or fails the job naming it."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.policy import decide, decisions, snapshot

P = snapshot.ProcessView
S = snapshot.JobState
C = snapshot.CheckpointView
NOW = 1000.0


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def gang(*procs: snapshot.ProcessView, **kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {"state": S.RUNNING, "queued": True, "parallel": len(procs), "node": procs[0].node,
                                 "home": "n1", "started_at": 0.0}
    fields.update(kw)
    return snapshot.JobView("g", processes=procs, **fields)  # type: ignore[arg-type]


def snap(nodes: list[snapshot.NodeView], *jobs: snapshot.JobView,
         cluster: snapshot.ClusterView | None = None) -> snapshot.Snapshot:
    return snapshot.Snapshot(tuple(nodes), jobs, cluster or snapshot.ClusterView(), NOW)


def running(index: int, where: str, started: float = 0.0, **kw: object) -> snapshot.ProcessView:
    return P(index, where, S.RUNNING, started_at=started, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ balancing

def test_the_balancer_moves_one_process_of_a_gang_off_a_crowded_node() -> None:
    g = gang(running(0, "n1", started=10.0), running(1, "n1", started=0.0))
    out = decide.decide(snap([node(1, load=2.0), node(2)], g))
    # the older process (longest expected remaining time) moves; its sibling stays: moving both gains nothing
    assert out.migrations == (decisions.Migration("g#1", "n1", "n2", decisions.MigrationReason.LOAD),)
    assert out.freezes == ()


def test_a_process_too_young_to_pay_for_its_move_stays() -> None:
    young = gang(running(0, "n1", started=NOW - 0.5), running(1, "n1", started=NOW - 0.5))
    assert decide.decide(snap([node(1, load=2.0), node(2)], young)).migrations == ()
    # the same age pays for a move that costs nothing
    free = snapshot.ClusterView(migration_cost_s=0.0)
    assert len(decide.decide(snap([node(1, load=2.0), node(2)], young, cluster=free)).migrations) == 1


def test_a_process_moves_only_for_more_than_the_minimum_gain() -> None:
    g = gang(running(0, "n1"), running(1, "n1"))
    slow = decide.decide(snap([node(1, load=2.0), node(2, speed=0.5)], g))  # half as fast: 2/2 → 1/0.5, no gain
    assert slow.migrations == ()
    fast = decide.decide(snap([node(1, load=2.0), node(2, speed=3.0)], g))  # both run faster there, even together
    assert sorted((m.job, m.target) for m in fast.migrations) == [("g#0", "n2"), ("g#1", "n2")]


def test_hysteresis_is_kept_per_process() -> None:
    moved_now = gang(running(0, "n1", last_migration=NOW - 5.0), running(1, "n1", last_migration=NOW - 5.0),
                     running(2, "n1"))
    out = decide.decide(snap([node(1, load=3.0), node(2), node(3)], moved_now))
    assert [m.job for m in out.migrations] == ["g#2"]  # only the one that did not just move
    settled = gang(running(0, "n1", last_migration=NOW - 31.0), running(1, "n1", last_migration=NOW - 5.0))
    assert [m.job for m in decide.decide(snap([node(1, load=2.0), node(2)], settled)).migrations] == ["g#0"]


def test_locked_unmigratable_frozen_and_finished_processes_stay() -> None:
    nodes = [node(1, load=2.0), node(2), node(3)]
    procs = (running(0, "n1"), running(1, "n1"))
    assert decide.decide(snap(nodes, gang(*procs, locked=True))).migrations == ()
    assert decide.decide(snap(nodes, gang(*procs, migratable=False))).migrations == ()
    others = gang(P(0, "n1", S.FROZEN, started_at=0.0), P(1, "n1", S.SUCCEEDED, started_at=0.0), running(2, "n1"))
    assert decide.decide(snap([node(1, load=1.0), node(2)], others)).migrations == ()


def test_lines_of_a_commands_file_move_on_their_own_too() -> None:
    lines = snapshot.JobView("s", state=S.RUNNING, queued=False, commands_max=2, commands_total=2,
                             commands_started=2, commands_running=2, node="n1", home="n1", started_at=0.0,
                             processes=(running(0, "n1"), running(1, "n1", started=5.0)))
    out = decide.decide(snap([node(1, load=2.0), node(2)], lines))
    assert out.migrations == (decisions.Migration("s#0", "n1", "n2", decisions.MigrationReason.LOAD),)


# ------------------------------------------------------------------------------------------ property

@st.composite
def clusters(draw: st.DrawFn) -> list[snapshot.NodeView]:
    count = draw(st.integers(2, 6))
    return [node(i, cpus=draw(st.integers(1, 3)), speed=draw(st.sampled_from([0.5, 1.0, 2.0])),
                 alive=i == 1 or draw(st.integers(0, 4)) != 0) for i in range(1, count + 1)]


def _loaded(nodes: list[snapshot.NodeView], where: list[str]) -> list[snapshot.NodeView]:
    return [dataclasses.replace(n, load=float(where.count(n.name))) for n in nodes]


@settings(max_examples=120, deadline=None)
@given(nodes=clusters(), data=st.data())
def test_a_gang_process_moves_exactly_as_the_same_single_job_would(nodes: list[snapshot.NodeView],
                                                                   data: st.DataObject) -> None:
    """The balancer's decision for processes of a gang is the one it makes for single jobs in their place
    (same nodes, ages and last moves): the gain, the cost and the hysteresis apply to each process alone."""
    up = [n.name for n in nodes if n.alive]
    count = data.draw(st.integers(1, 8))
    where = [data.draw(st.sampled_from(up)) for _ in range(count)]
    started = [float(data.draw(st.sampled_from([0, 500, 990, 999]))) for _ in range(count)]
    moved = [data.draw(st.sampled_from([None, NOW - 5.0, NOW - 100.0])) for _ in range(count)]
    cluster = snapshot.ClusterView(min_gain=data.draw(st.sampled_from([0.0, 0.2, 0.5])),
                                   migration_cost_s=data.draw(st.sampled_from([0.0, 1.0, 20.0])))
    loaded = _loaded(nodes, where)
    procs = tuple(P(i, where[i], S.RUNNING, started_at=started[i], last_migration=moved[i]) for i in range(count))
    as_gang = decide.decide(snap(loaded, gang(*procs), cluster=cluster)).migrations
    singles = [snapshot.JobView(f"g#{i}", state=S.RUNNING, queued=False, node=where[i], home="n1",
                                started_at=started[i], last_migration=moved[i]) for i in range(count)]
    as_singles = decide.decide(snap(loaded, *singles, cluster=cluster)).migrations
    assert as_gang == as_singles
    for m in as_gang:
        index = snapshot.split_unit(m.job)[1]
        assert index is not None and procs[index].node == m.source
        last = moved[index]
        assert last is None or NOW - last >= cluster.hysteresis_s
    assert len({m.job for m in as_gang}) == len(as_gang)


# ------------------------------------------------------------------------------------------ recovery

def test_a_lost_process_restarts_from_its_own_newest_checkpoint_elsewhere() -> None:
    sets = (C("/c/g_1.1", 10.0), C("/c/g_1.2", 20.0), C("/c/g_1.3", 30.0, node="n2"))  # .3 died with n2
    g = gang(running(0, "n1"), running(1, "n2", checkpoints=sets), running(2, "n3"))
    out = decide.decide(snap([node(1, load=1.0), node(2, alive=False), node(3, load=1.0), node(4)], g))
    assert out.recoveries == (decisions.Recovery("g#1", "/c/g_1.2", "n2", "n4"),)
    assert out.failures == ()


def test_each_lost_process_recovers_on_its_own_node() -> None:
    g = gang(running(0, "n1", checkpoints=(C("/c/g_0.1", 1.0),)), running(1, "n1", checkpoints=(C("/c/g_1.1", 1.0),)),
             running(2, "n2"))
    out = decide.decide(snap([node(1, alive=False), node(2, load=1.0), node(3), node(4)], g))
    assert sorted((r.job, r.checkpoint, r.target) for r in out.recoveries) == [
        ("g#0", "/c/g_0.1", "n3"), ("g#1", "/c/g_1.1", "n4")]


def test_a_lost_process_without_a_checkpoint_fails_the_job_naming_it_and_nothing_restarts() -> None:
    g = gang(running(0, "n1", checkpoints=(C("/c/g_0.1", 1.0),)), running(1, "n1"))
    out = decide.decide(snap([node(1, alive=False), node(2), node(3)], g))
    assert out.recoveries == ()
    assert [(f.job, f.reason, f.message) for f in out.failures] == [
        ("g", decisions.FailReason.NO_CHECKPOINT, "process 1 was on node n1, which died, and it had no checkpoint")]
    on_dead = gang(running(0, "n1", checkpoints=(C("/c/g_0.1", 1.0, node="n1"),)), running(1, "n2"))
    lost = decide.decide(snap([node(1, alive=False), node(2), node(3)], on_dead)).failures
    assert [(f.reason, f.message) for f in lost] == [
        (decisions.FailReason.CHECKPOINT_LOST, "process 0 was on node n1, which died, and its checkpoints were on "
                                               "dead nodes")]


def test_a_process_that_had_not_started_starts_afresh_elsewhere() -> None:
    g = gang(P(0, "n1", S.PENDING), running(1, "n2"), state=S.PENDING)
    out = decide.decide(snap([node(1, alive=False), node(2, load=1.0), node(3)], g))
    assert out.recoveries == (decisions.Recovery("g#0", None, "n1", "n3"),)


def test_with_no_node_left_the_lost_process_waits() -> None:
    g = gang(running(0, "n1", checkpoints=(C("/c/g_0.1", 1.0),)), running(1, "n2"))
    out = decide.decide(snap([node(1, alive=False), node(2, load=1.0, accept=False)], g))
    assert (out.recoveries, out.failures) == ((), ())
    assert out.waits == (decisions.Wait("g", decisions.WaitReason.NO_NODE),)
