"""Load-balancing benchmark: a discrete-time cluster driving the real `decide()`.

Nodes of different speeds; CPU-bound jobs arrive in bursts, all submitted on node 1. Each
strategy runs the same workload; makespan and mean slowdown are printed against a lower
bound measured on the same workload. Not a test: run `.venv/bin/python bench/balance.py`
(`--quick` for a smaller run).

Slowdown of a job = (finish - arrival) / (work / fastest speed): 1.0 means it ran alone on
the fastest node from the moment it arrived. Work is in seconds at speed 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys

from mosix.policy import decide, decisions, snapshot


@dataclasses.dataclass
class SimJob:
    """One job's simulated life."""

    name: str
    arrival: float
    work: float
    done: float = 0.0
    node: str | None = None
    started: float | None = None
    finished: float | None = None
    last_migration: float | None = None
    busy_until: float = 0.0  # migrating: no progress until then
    migrations: int = 0


@dataclasses.dataclass(frozen=True)
class Workload:
    """Nodes as (speed, cpus) and jobs as (arrival, work)."""

    nodes: tuple[tuple[float, int], ...]
    jobs: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class Result:
    makespan: float
    slowdown: float
    migrations: int


def workload(seed: int, bursts: int, per_burst: int, dist: str) -> Workload:
    """Eight nodes of speeds 1-4 (ten CPUs); bursts of jobs 60 s apart, all from node 1.

    `uniform`: work 20-120 s, each burst more than the cluster clears in 60 s, so a queue
    builds up (a busy cluster). `pareto`: heavy-tailed work (capped at 400 s), where the
    longest-job bound assumes the scheduler knew in advance which job is the long one.
    """
    rng = random.Random(seed)
    nodes = ((1.0, 2), (1.0, 1), (1.0, 1), (1.5, 1), (2.0, 1), (2.0, 2), (3.0, 1), (4.0, 1))
    jobs = []
    for burst in range(bursts):
        for _ in range(per_burst):
            pareto = min(400.0, rng.paretovariate(1.5) * 30.0)
            work = rng.uniform(20.0, 120.0) if dist == "uniform" else pareto
            jobs.append((burst * 60.0 + rng.uniform(0, 5), work))
    return Workload(nodes, tuple(sorted(jobs)))


def lower_bound(load: Workload) -> tuple[float, float, float]:
    """(capacity bound, longest-job bound, their max): no schedule finishes sooner."""
    capacity = sum(speed * cpus for speed, cpus in load.nodes)
    fastest = max(speed for speed, _ in load.nodes)
    by_capacity = max(a + sum(w for b, w in load.jobs if b >= a) / capacity for a, _ in load.jobs)
    by_job = max(a + w / fastest for a, w in load.jobs)
    return by_capacity, by_job, max(by_capacity, by_job)


def node_views(load: Workload, jobs: list[SimJob]) -> tuple[snapshot.NodeView, ...]:
    busy: dict[str, float] = {}
    for job in jobs:
        if job.node is not None and job.finished is None:
            busy[job.node] = busy.get(job.node, 0.0) + 1.0
    return tuple(
        snapshot.NodeView(name=f"n{i}", number=i, address=f"127.0.0.{i}", cpus=cpus, speed=speed,
                          load=busy.get(f"n{i}", 0.0), memory_free_mb=64000, memory_total_mb=64000)
        for i, (speed, cpus) in enumerate(load.nodes, start=1))


def job_view(job: SimJob, now: float, kind: snapshot.PlacementKind, queued: bool) -> snapshot.JobView:
    if job.node is None:
        state = snapshot.JobState.QUEUED if queued else snapshot.JobState.PENDING
    elif job.busy_until > now:
        state = snapshot.JobState.MIGRATING
    else:
        state = snapshot.JobState.RUNNING
    return snapshot.JobView(name=job.name, state=state, position=int(job.arrival * 1000),
                            submitted=int(job.name[1:]), queued=queued, node=job.node, home="n1",
                            placement=kind, started_at=job.started, last_migration=job.last_migration)


def simulate(load: Workload, cluster: snapshot.ClusterView, *, kind: snapshot.PlacementKind,
             queued: bool, migrate: bool, interval: float = 1.0, dt: float = 0.1) -> Result:
    """Run the workload to completion; `migrate` False applies admissions only (static)."""
    jobs = [SimJob(f"j{i}", a, w) for i, (a, w) in enumerate(load.jobs)]
    speeds = {f"n{i}": (s, c) for i, (s, c) in enumerate(load.nodes, start=1)}
    now, next_round, steps = 0.0, 0.0, 0
    while any(j.finished is None for j in jobs):
        if now >= next_round - 1e-9:
            present = [j for j in jobs if j.arrival <= now and j.finished is None]
            snap = snapshot.Snapshot(node_views(load, jobs),
                                     tuple(job_view(j, now, kind, queued) for j in present), cluster, now)
            _apply(decide.decide(snap), {j.name: j for j in present}, now, cluster, migrate)
            next_round += interval
        running: dict[str, list[SimJob]] = {}
        for job in jobs:
            if job.node is not None and job.finished is None:
                running.setdefault(job.node, []).append(job)
        for name, here in running.items():
            speed, cpus = speeds[name]
            rate = speed * min(1.0, cpus / len(here))
            for job in here:
                if job.busy_until <= now:
                    job.done += rate * dt
                    if job.done >= job.work - 1e-9:
                        job.finished = now + dt
        now += dt
        steps += 1
    fastest = max(s for s, _ in load.nodes)
    makespan = max(j.finished or 0.0 for j in jobs)
    slowdown = statistics.fmean(((j.finished or 0.0) - j.arrival) / (j.work / fastest) for j in jobs)
    return Result(makespan, slowdown, sum(j.migrations for j in jobs))


def _apply(out: decisions.Decisions, jobs: dict[str, SimJob], now: float,
           cluster: snapshot.ClusterView, migrate: bool) -> None:
    for admission in out.admissions:
        job = jobs[admission.job]
        job.node, job.started = admission.nodes[0], now
    if not migrate:
        return
    for move in out.migrations:
        job = jobs[move.job]
        job.node, job.last_migration = move.target, now
        job.busy_until = now + cluster.migration_cost_s
        job.migrations += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load-balancing benchmark on the real policy core.")
    parser.add_argument("--quick", action="store_true", help="a smaller workload, well under 30 s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dist", choices=("uniform", "pareto"), default="uniform",
                        help="job work distribution")
    parser.add_argument("--cost", type=float, default=2.0, help="migration cost in seconds")
    args = parser.parse_args(argv)
    bursts, per_burst = (3, 24) if args.quick else (6, 24)
    load = workload(args.seed, bursts, per_burst, args.dist)
    cluster = snapshot.ClusterView(migration_cost_s=args.cost, hysteresis_s=10.0, min_gain=0.2)
    by_capacity, by_job, bound = lower_bound(load)
    best, home = snapshot.PlacementKind.BEST, snapshot.PlacementKind.HOME
    def run(kind: snapshot.PlacementKind, queued: bool, migrate: bool) -> Result:
        return simulate(load, cluster, kind=kind, queued=queued, migrate=migrate)

    rows = [
        ("static: -q -b, never move (k8s-like)", run(best, True, False)),
        ("static: -b at arrival, never move", run(best, False, False)),
        (f"mosix: -q -b + migration ({args.cost:g} s)", run(best, True, True)),
        (f"mosix: -b + migration ({args.cost:g} s)", run(best, False, True)),
        (f"mosix: start on node 1 + migration ({args.cost:g} s)", run(home, False, True)),
    ]
    work = sum(w for _, w in load.jobs)
    speeds = ", ".join(f"{s:g}x{c}" for s, c in load.nodes)
    print(f"{len(load.nodes)} nodes (speed x cpus: {speeds}), {len(load.jobs)} jobs ({args.dist}), "
          f"total work {work:.0f} s at speed 1, {bursts} bursts on node 1")
    print(f"lower bound: makespan {bound:.1f} s (capacity {by_capacity:.1f}, longest job {by_job:.1f}), "
          f"slowdown 1.00")
    peer = rows[0][1]
    print(f"{'strategy':48} {'makespan':>9} {'x bound':>8} {'x static':>9} {'slowdown':>9} {'migr':>5}")
    for label, result in rows:
        print(f"{label:48} {result.makespan:9.1f} {result.makespan / bound:8.3f} "
              f"{result.makespan / peer.makespan:9.3f} {result.slowdown:9.2f} {result.migrations:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
