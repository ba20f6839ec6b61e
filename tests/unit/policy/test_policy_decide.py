"""The whole round: order of concerns and one decision per job."""

from __future__ import annotations

from mosix.policy import decide, snapshot

NOW = 1000.0


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def test_a_mixed_round() -> None:
    jobs = (
        snapshot.JobView(name="lost", state=snapshot.JobState.RUNNING, node="n9", home="n1"),
        snapshot.JobView(name="busy", state=snapshot.JobState.RUNNING, node="n1", home="n1",
                         started_at=NOW - 500.0),
        snapshot.JobView(name="busy2", state=snapshot.JobState.RUNNING, node="n1", home="n1",
                         started_at=NOW - 400.0),
        snapshot.JobView(name="q", position=1, placement=snapshot.PlacementKind.BEST),
    )
    nodes = (node(1, load=2), node(2, speed=2.0), node(9, alive=False))
    out = decide.decide(snapshot.Snapshot(nodes, jobs, snapshot.ClusterView(), NOW))
    assert [f.job for f in out.failures] == ["lost"]
    assert [(a.job, a.nodes) for a in out.admissions] == [("q", ("n2",))]
    # n2 took the queued job first; sharing its faster CPU still beats n1 for the oldest job
    assert [(m.job, m.source, m.target) for m in out.migrations] == [("busy", "n1", "n2")]


def test_each_job_gets_one_decision() -> None:
    jobs = tuple(snapshot.JobView(name=f"j{i}", state=snapshot.JobState.RUNNING, node="n1", home="n1",
                                  started_at=NOW - 100.0 * i) for i in range(10))
    nodes = (node(1, load=10), node(2, speed=3.0), node(3, expel=True))
    out = decide.decide(snapshot.Snapshot(nodes, jobs, snapshot.ClusterView(), NOW))
    named = [m.job for m in out.migrations] + [f.job for f in out.freezes] + [c.job for c in out.continues]
    assert len(named) == len(set(named))
    assert out.migrations and out.freezes
