"""Recovery after a node dies."""

from __future__ import annotations

from mosix.policy import decide, decisions, snapshot


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def lost(*checkpoints: snapshot.CheckpointView, **kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {"state": snapshot.JobState.RUNNING, "node": "n1", "home": "n1",
                                 "checkpoints": checkpoints}
    fields.update(kw)
    return snapshot.JobView(name="j", **fields)  # type: ignore[arg-type]


def run(nodes: list[snapshot.NodeView], job: snapshot.JobView) -> decisions.Decisions:
    return decide.decide(snapshot.Snapshot(tuple(nodes), (job,), snapshot.ClusterView(), 100.0))


CP = snapshot.CheckpointView


def test_restarts_from_the_newest_reachable_checkpoint() -> None:
    job = lost(CP("ck.1", 10.0), CP("ck.2", 20.0, node="n2"), CP("ck.3", 30.0, node="n1"))
    out = run([node(1, alive=False), node(2), node(3, speed=2.0)], job)
    assert out.recoveries == (decisions.Recovery("j", "ck.2", "n1", "n3"),)
    assert out.failures == () and out.admissions == ()


def test_fails_without_a_checkpoint() -> None:
    out = run([node(1, alive=False), node(2)], lost())
    assert [(f.job, f.reason) for f in out.failures] == [("j", decisions.FailReason.NO_CHECKPOINT)]
    assert "n1 died" in out.failures[0].message


def test_fails_when_checkpoints_died_too() -> None:
    out = run([node(1, alive=False), node(2)], lost(CP("ck.1", 1.0, node="n1")))
    assert [f.reason for f in out.failures] == [decisions.FailReason.CHECKPOINT_LOST]


def test_waits_when_no_node_can_take_it() -> None:
    out = run([node(1, alive=False), node(2, memory_free_mb=10)], lost(CP("ck.1", 1.0), memory_mb=100))
    assert [(w.job, w.reason) for w in out.waits] == [("j", decisions.WaitReason.NO_NODE)]


def test_unknown_node_counts_as_dead() -> None:
    out = run([node(2)], lost(CP("ck.1", 1.0)))
    assert [r.target for r in out.recoveries] == ["n2"]


def test_live_node_needs_no_recovery() -> None:
    out = run([node(1, load=1), node(2)], lost(CP("ck.1", 1.0), locked=True))
    assert out.recoveries == () and out.failures == ()


def test_a_job_about_to_start_just_starts_elsewhere() -> None:
    pending = lost(state=snapshot.JobState.PENDING, placement=snapshot.PlacementKind.BEST)
    out = run([node(1, alive=False), node(2)], pending)
    assert [(a.job, a.nodes, a.reason) for a in out.admissions] == [("j", ("n2",), decisions.AdmitReason.RESTART)]
    assert out.failures == ()
