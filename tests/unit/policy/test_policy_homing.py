"""Bringing I/O-heavy jobs home (mosix.policy.homing), and its interplay with the balancer."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.policy import balancing, decide, decisions, homing, snapshot

NOW = 1000.0
IO = decisions.MigrationReason.IO
HEAVY = 4096.0  # KB/s: 4 MB/s for 100 s is 40 s of forwarding, far above a 1 s migration


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def away(name: str = "a", on: str = "n2", **kw: object) -> snapshot.JobView:
    """A job whose home is n1, running on `on` for 100 s, doing heavy I/O."""
    fields: dict[str, object] = {
        "state": snapshot.JobState.RUNNING,
        "node": on,
        "home": "n1",
        "started_at": NOW - 100.0,
        "io_rate_kbps": HEAVY,
    }
    fields.update(kw)
    return snapshot.JobView(name=name, **fields)  # type: ignore[arg-type]


def moves(
    nodes: list[snapshot.NodeView], jobs: list[snapshot.JobView], now: float = NOW, **kw: object
) -> list[tuple[str, str, str, decisions.MigrationReason]]:
    cluster = snapshot.ClusterView(**kw)  # type: ignore[arg-type]
    out = decide.decide(snapshot.Snapshot(tuple(nodes), tuple(jobs), cluster, now)).migrations
    return [(m.job, m.source, m.target, m.reason) for m in out]


def two() -> list[snapshot.NodeView]:
    return [node(1, load=0), node(2, load=1)]


def test_a_heavy_io_job_away_goes_home() -> None:
    assert moves(two(), [away()]) == [("a", "n2", "n1", IO)]


def test_with_c_it_stays() -> None:
    assert moves(two(), [away(stay_on_syscalls=True)]) == []


@pytest.mark.parametrize(
    "job",
    [
        away(io_rate_kbps=100.0),  # light: under the threshold
        away(io_rate_kbps=0.0),
        away(locked=True),
        away(migratable=False),
        away(last_migration=NOW - 10.0),  # within the 30 s hysteresis
        away(started_at=NOW - 0.5),  # too young: its expected remaining I/O is small
        away(on="n1"),  # already home
        away(home=None),
    ],
    ids=["light", "idle", "locked", "unmigratable", "hysteresis", "young", "home", "no-home"],
)
def test_stays(job: snapshot.JobView) -> None:
    assert moves(two(), [job]) == []


def test_not_to_a_dead_or_full_home() -> None:
    assert moves([node(1, alive=False), node(2, load=1)], [away()]) == []
    assert moves([node(1, memory_free_mb=300), node(2, load=1)], [away(memory_mb=100)]) == []


def test_not_when_home_is_so_slow_the_cpu_lost_outweighs_the_io_saved() -> None:
    """Home at a tenth of the speed: 100 s of remaining work loses 900 s; 4 MB/s of I/O saves 40 s."""
    assert moves([node(1, speed=0.1), node(2, load=1)], [away()]) == []
    # The same home with a heavier job: 100 MB/s saves 1000 s, which beats the 900 s lost.
    assert moves([node(1, speed=0.1), node(2, load=1)], [away(io_rate_kbps=102400.0)]) == [("a", "n2", "n1", IO)]


def test_the_threshold_and_cost_are_cluster_knobs() -> None:
    assert moves(two(), [away()], io_home_kbps=8192.0) == []
    assert moves(two(), [away(io_rate_kbps=512.0)]) == [("a", "n2", "n1", IO)]  # 5 s saved > 1 s cost
    assert moves(two(), [away(io_rate_kbps=512.0)], migration_cost_s=10.0) == []


def test_saving_formula() -> None:
    job = away(io_rate_kbps=1024.0)  # 1 MB/s for an expected 100 s more, at 0.1 s per MB
    assert homing.io_saved(job, NOW, snapshot.ClusterView()) == pytest.approx(10.0)


def test_the_balancer_keeps_an_io_bound_job_at_home() -> None:
    """Home is overloaded and n2 idle: a CPU job leaves, the I/O-bound one stays (it would come back)."""
    busy_home = [node(1, load=2), node(2, load=0)]
    cpu = away("cpu", on="n1", io_rate_kbps=0.0)
    io = away("io", on="n1")
    got = moves(busy_home, [cpu, io])
    assert [m[0] for m in got] == ["cpu"]
    assert moves(busy_home, [io, dataclasses.replace(cpu, name="cpu2")])[0][0] == "cpu2"
    # Alone at home, with -c it may leave like any job; without, it stays.
    assert moves([node(1, load=2), node(2)], [io, away("io2", on="n1")]) == []
    assert [m[0] for m in moves([node(1, load=2), node(2)], [io, away("c", on="n1", stay_on_syscalls=True)])] == ["c"]


# ---------------------------------------------------------------- properties


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[snapshot.NodeView], list[snapshot.JobView]]:
    count = draw(st.integers(2, 5))
    nodes = [
        node(i + 1, load=float(draw(st.integers(0, 4))), speed=draw(st.sampled_from([0.5, 1.0, 2.0])))
        for i in range(count)
    ]
    jobs = []
    for i in range(draw(st.integers(1, 8))):
        home = draw(st.integers(1, count))
        on = draw(st.integers(1, count))
        jobs.append(
            snapshot.JobView(
                name=f"j{i}",
                state=snapshot.JobState.RUNNING,
                node=f"n{on}",
                home=f"n{home}",
                started_at=NOW - draw(st.sampled_from([1.0, 30.0, 300.0, 3000.0])),
                io_rate_kbps=draw(st.sampled_from([0.0, 50.0, 300.0, 4096.0, 65536.0])),
                stay_on_syscalls=draw(st.booleans()),
                locked=draw(st.booleans()),
                memory_mb=draw(st.sampled_from([0, 100, 2000])),
                last_migration=draw(st.sampled_from([None, NOW - 5.0, NOW - 100.0])),
            )
        )
    return nodes, jobs


def _apply(
    jobs: list[snapshot.JobView], migrations: tuple[decisions.Migration, ...], now: float
) -> list[snapshot.JobView]:
    target = {m.job: m.target for m in migrations}
    return [dataclasses.replace(j, node=target[j.name], last_migration=now) if j.name in target else j for j in jobs]


@settings(max_examples=200, deadline=None)
@given(world=worlds())
def test_only_io_bound_movable_jobs_go_home(world: tuple[list[snapshot.NodeView], list[snapshot.JobView]]) -> None:
    nodes, jobs = world
    by_name = {j.name: j for j in jobs}
    cluster = snapshot.ClusterView()
    for m in decide.decide(snapshot.Snapshot(tuple(nodes), tuple(jobs), cluster, NOW)).migrations:
        job = by_name[m.job]
        if m.reason is IO:
            assert m.target == job.home and m.source == job.node != job.home
            assert not job.stay_on_syscalls and not job.locked and job.io_rate_kbps >= cluster.io_home_kbps
            assert job.last_migration is None or NOW - job.last_migration >= cluster.hysteresis_s
        if m.reason is decisions.MigrationReason.LOAD:
            assert not (job.node == job.home and balancing.io_bound(job, cluster))


@settings(max_examples=200, deadline=None)
@given(world=worlds(), later=st.floats(0.0, 29.0), after=st.floats(30.0, 10000.0))
def test_no_ping_pong(
    world: tuple[list[snapshot.NodeView], list[snapshot.JobView]], later: float, after: float
) -> None:
    """A job that moved does not move again within the hysteresis; one brought home for its I/O
    is never sent away for load afterwards, however much later."""
    nodes, jobs = world
    first = decide.decide(snapshot.Snapshot(tuple(nodes), tuple(jobs), snapshot.ClusterView(), NOW)).migrations
    moved = _apply(jobs, first, NOW)
    again = decide.decide(snapshot.Snapshot(tuple(nodes), tuple(moved), snapshot.ClusterView(), NOW + later))
    assert not {m.job for m in first} & {m.job for m in again.migrations}
    homed = {m.job for m in first if m.reason is IO}
    much_later = decide.decide(snapshot.Snapshot(tuple(nodes), tuple(moved), snapshot.ClusterView(), NOW + after))
    assert not [m for m in much_later.migrations if m.job in homed and m.reason is decisions.MigrationReason.LOAD]
