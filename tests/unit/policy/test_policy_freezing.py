"""Freezing for load, continuing, and expelling guests."""

from __future__ import annotations

import types

from mosix.policy import decide, decisions, freezing, snapshot

NOW = 1000.0
AUTO = snapshot.FreezeReason.AUTO
EXPELLED = snapshot.FreezeReason.EXPELLED


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def running(name: str, on: str = "n1", **kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {"state": snapshot.JobState.RUNNING, "node": on, "home": on,
                                 "started_at": NOW - 100.0, "locked": True}
    fields.update(kw)
    return snapshot.JobView(name=name, **fields)  # type: ignore[arg-type]


def frozen(name: str, reason: snapshot.FreezeReason, on: str = "n1", **kw: object) -> snapshot.JobView:
    return running(name, on, state=snapshot.JobState.FROZEN, frozen_reason=reason, **kw)


def cluster(**limits: float) -> snapshot.ClusterView:
    table = {int(k[1:]): v for k, v in limits.items()} or {0: 2.0}
    return snapshot.ClusterView(freeze_limits=types.MappingProxyType(table))


def run(nodes: list[snapshot.NodeView], jobs: list[snapshot.JobView],
        limits: snapshot.ClusterView | None = None) -> decisions.Decisions:
    return decide.decide(snapshot.Snapshot(tuple(nodes), tuple(jobs), limits or cluster(), NOW))


def test_freezes_only_the_excess() -> None:
    jobs = [running(f"j{i}", started_at=NOW - 100.0 + i) for i in range(5)]
    out = run([node(1, load=5)], jobs)
    # limit 2 per CPU, one CPU, load 5: three must go; the most recently started first
    assert [(f.job, f.reason) for f in out.freezes] == [("j4", AUTO), ("j3", AUTO), ("j2", AUTO)]


def test_guests_and_low_priority_freeze_first() -> None:
    jobs = [running("own"), running("guest", home="n9"), running("low", priority=90)]
    out = run([node(1, load=3), node(9, alive=True)], jobs)
    assert [f.job for f in out.freezes] == ["guest"]


def test_classes_have_their_own_limits() -> None:
    jobs = [running("local"), running("grid", grid_class=1), running("local2")]
    out = run([node(1, load=3)], jobs, cluster(c0=4.0, c1=2.0))
    assert [f.job for f in out.freezes] == ["grid"]


def test_unlimited_class_is_never_frozen() -> None:
    out = run([node(1, load=5)], [running("g", grid_class=7)] * 1)
    assert out.freezes == ()


def test_non_migratable_jobs_cannot_freeze() -> None:
    out = run([node(1, load=3)], [running(f"j{i}", migratable=False) for i in range(3)])
    assert out.freezes == ()


def test_auto_frozen_continue_when_load_drops() -> None:
    jobs = [frozen("a", AUTO, started_at=NOW - 300.0), frozen("b", AUTO, started_at=NOW - 200.0),
            frozen("m", snapshot.FreezeReason.MANUAL)]
    out = run([node(1, load=1)], jobs)
    assert [(c.job, c.node, c.reason) for c in out.continues] == [("a", "n1", AUTO)]


def test_nothing_continues_at_the_limit() -> None:
    assert run([node(1, load=2)], [frozen("a", AUTO)]).continues == ()


def test_expel_sends_guests_home() -> None:
    jobs = [running("guest", on="n2", home="n1", locked=False), running("own", on="n2")]
    out = run([node(1), node(2, expel=True, load=2)], jobs)
    assert [(m.job, m.source, m.target, m.reason) for m in out.migrations] == [
        ("guest", "n2", "n1", decisions.MigrationReason.EXPELLED)]
    assert out.freezes == ()


def test_expel_elsewhere_when_home_cannot_take_it() -> None:
    jobs = [running("guest", on="n2", home="n1", locked=False)]
    out = run([node(1, block=True), node(2, expel=True, load=1), node(3)], jobs)
    assert [(m.job, m.target) for m in out.migrations] == [("guest", "n3")]


def test_expel_freezes_what_cannot_go() -> None:
    jobs = [running("locked", on="n2", home="n1"), running("stuck", on="n2", home="n1", locked=False)]
    out = run([node(1, alive=False), node(2, expel=True, load=2)], jobs)
    assert [(f.job, f.reason) for f in out.freezes] == [("locked", EXPELLED), ("stuck", EXPELLED)]


def test_expelled_continue_once_home_takes_them() -> None:
    out = run([node(1), node(2, expel=True)], [frozen("g", EXPELLED, on="n2", home="n1")])
    assert [(c.job, c.node, c.reason) for c in out.continues] == [("g", "n1", EXPELLED)]


def test_block_alone_keeps_guests() -> None:
    out = run([node(1), node(2, block=True, load=1)], [running("guest", on="n2", home="n1")])
    assert out.migrations == () and out.freezes == ()


def test_freeze_order_comparator() -> None:
    a = running("a", home="n9", priority=10, started_at=5.0)
    b = running("b", priority=90, started_at=1.0)
    c = running("c", started_at=9.0)
    d = running("d", started_at=9.0)
    ordered = sorted([d, c, b, a], key=lambda j: freezing.freeze_order(j, "n1", 50))
    assert [j.name for j in ordered] == ["a", "b", "c", "d"]


def test_auto_frozen_guest_does_not_resume_on_an_expelling_node() -> None:
    jobs = [frozen("g", AUTO, on="n2", home="n1")]
    out = run([node(1, block=True), node(2, expel=True), node(3)], jobs)
    assert [(c.job, c.node, c.reason) for c in out.continues] == [("g", "n3", AUTO)]
