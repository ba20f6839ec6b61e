"""Scale benchmark: `decide()` on 1,000 nodes with 10,000 queued jobs.

A decision round is one `decide()` call on the whole snapshot (recovery, expel, continue,
queue admission, ushering, balancing and freezing over every node and job); its latency is
what this measures, in CPU and wall time, as p50/p99 over rounds. Figures: placements per
second when one round fills an idle cluster (cold start); the first round on a full cluster
whose random initial placement the balancer corrects (~200 migrations); steady rounds on that
cluster with every decision carried out (a few jobs finish, a few start, a few move); and a
worst case where the imbalance is never corrected, so every round decides ~200 migrations
again. Not a test: run `.venv/bin/python bench/scale.py` (`--quick` for fewer rounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
import sys
import time

from mosix.policy import decide, decisions, snapshot


def cluster_nodes(rng: random.Random, count: int, busy: float) -> list[snapshot.NodeView]:
    """`count` nodes of 1-8 CPUs and varied speeds, each `busy` loaded (0.0-1.0 of its CPUs)."""
    nodes = []
    for i in range(1, count + 1):
        cpus = rng.choice((1, 2, 4, 8))
        total = cpus * 4096
        nodes.append(
            snapshot.NodeView(
                name=f"node-{i:04d}",
                number=i,
                address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                cpus=cpus,
                speed=rng.choice((5000.0, 7500.0, 10000.0, 15000.0)),
                load=round(cpus * busy),
                memory_free_mb=int(total * rng.uniform(0.3, 0.9)),
                memory_total_mb=total,
                block=rng.random() < 0.01,
                local=True,
            )
        )
    return nodes


def queued_jobs(rng: random.Random, count: int, nodes: int) -> list[snapshot.JobView]:
    """`count` queued jobs: mixed priorities, memory needs and placements, some gangs."""
    jobs = []
    for i in range(count):
        roll = rng.random()
        kind, ref = snapshot.PlacementKind.BEST, None
        ranges: tuple[tuple[int, int], ...] = ()
        if roll < 0.1:
            kind, ref = snapshot.PlacementKind.NODE, str(rng.randint(1, nodes))
        elif roll < 0.2:
            first = rng.randint(1, nodes - 20)
            kind, ranges = snapshot.PlacementKind.RANGE, ((first, first + 19),)
        elif roll < 0.4:
            kind = snapshot.PlacementKind.HOME
        jobs.append(
            snapshot.JobView(
                name=f"job-{i:05d}",
                priority=rng.choice((None, None, None, 20, 60)),
                position=i * 10,
                submitted=i,
                home=f"node-{rng.randint(1, nodes):04d}",
                placement=kind,
                node_ref=ref,
                ranges=ranges,
                memory_mb=rng.choice((0, 0, 500, 2000)),
                parallel=4 if rng.random() < 0.02 else 1,
            )
        )
    return jobs


def running_jobs(rng: random.Random, nodes: list[snapshot.NodeView], now: float) -> list[snapshot.JobView]:
    """One running job per busy CPU, so the balancer and the freezer have work to scan."""
    jobs = []
    for node in nodes:
        for k in range(int(node.load)):
            jobs.append(
                snapshot.JobView(
                    name=f"run-{node.number:04d}-{k}",
                    state=snapshot.JobState.RUNNING,
                    queued=True,
                    node=node.name,
                    home=node.name,
                    started_at=now - rng.uniform(0, 600),
                    last_migration=None if rng.random() < 0.8 else now - rng.uniform(0, 60),
                )
            )
    return jobs


def cold(seed: int) -> tuple[int, float, float]:
    """One round on an idle cluster: (processes placed, wall seconds, CPU seconds)."""
    rng = random.Random(seed)
    nodes = cluster_nodes(rng, 1000, 0.0)
    snap = snapshot.Snapshot(tuple(nodes), tuple(queued_jobs(rng, 10000, 1000)), snapshot.ClusterView(), 1000.0)
    wall, cpu = time.perf_counter(), time.process_time()
    out = decide.decide(snap)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return sum(len(a.nodes) for a in out.admissions), wall, cpu


class Cluster:
    """The simulated cluster between rounds: node loads and running jobs, with each round's
    decisions carried out (starts, migrations, freezes, continues) and a few jobs finishing."""

    def __init__(self, seed: int, nodes: int, queued: int) -> None:
        self.rng = random.Random(seed)
        self.now = 1000.0
        self.nodes = cluster_nodes(self.rng, nodes, 1.0)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.queued = {j.name: j for j in queued_jobs(self.rng, queued, nodes)}
        self.active = {j.name: j for j in running_jobs(self.rng, self.nodes, self.now)}

    def _load(self, name: str, delta: float) -> None:
        i = self.index[name]
        self.nodes[i] = dataclasses.replace(self.nodes[i], load=max(0.0, self.nodes[i].load + delta))

    def finish(self, count: int) -> None:
        """`count` running jobs end (their CPUs come free) and the clock moves one interval."""
        self.now += 2.0
        running = [j for j in self.active.values() if j.state is snapshot.JobState.RUNNING]
        for job in self.rng.sample(running, min(count, len(running))):
            del self.active[job.name]
            assert job.node is not None
            self._load(job.node, -job.cpu_demand)

    def snapshot(self) -> snapshot.Snapshot:
        jobs = tuple(self.queued.values()) + tuple(self.active.values())
        return snapshot.Snapshot(tuple(self.nodes), jobs, snapshot.ClusterView(), self.now)

    def apply(self, out: decisions.Decisions) -> None:
        running = snapshot.JobState.RUNNING
        for a in out.admissions:
            job = self.queued.pop(a.job)
            for k, node in enumerate(a.nodes):  # one running view per process (a gang runs on several nodes)
                name = a.job if len(a.nodes) == 1 else f"{a.job}/{k}"
                self.active[name] = dataclasses.replace(
                    job, name=name, state=running, node=node, parallel=1, started_at=self.now
                )
                self._load(node, job.cpu_demand)
        for m in out.migrations:
            job = self.active[m.job]
            self.active[m.job] = dataclasses.replace(job, node=m.target, last_migration=self.now)
            self._load(m.source, -job.cpu_demand)
            self._load(m.target, job.cpu_demand)
        for f in out.freezes:
            job = self.active[f.job]
            self.active[f.job] = dataclasses.replace(job, state=snapshot.JobState.FROZEN, frozen_reason=f.reason)
            self._load(f.node, -job.cpu_demand)
        for c in out.continues:
            job = self.active[c.job]
            self.active[c.job] = dataclasses.replace(job, state=running, node=c.node, frozen_reason=None)
            self._load(c.node, job.cpu_demand)


@dataclasses.dataclass
class Rounds:
    """Per-round figures: wall and CPU seconds of `decide()`, processes placed, migrations."""

    walls: list[float] = dataclasses.field(default_factory=list)
    cpus: list[float] = dataclasses.field(default_factory=list)
    placed: list[int] = dataclasses.field(default_factory=list)
    moved: list[int] = dataclasses.field(default_factory=list)


def timed(snap: snapshot.Snapshot, into: Rounds) -> decisions.Decisions:
    """One `decide()` on `snap`, timed into `into`."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = decide.decide(snap)
    into.cpus.append(time.process_time() - cpu)
    into.walls.append(time.perf_counter() - wall)
    into.placed.append(sum(len(a.nodes) for a in out.admissions))
    into.moved.append(len(out.migrations))
    return out


def steady(seed: int, rounds: int, warmup: int, freed: int) -> tuple[Rounds, Rounds, int]:
    """A full cluster with its decisions carried out: `warmup` rounds to settle (the first
    of them balances the initial, random placement), then `rounds` measured rounds, `freed`
    jobs finishing before each. Returns (warm-up rounds, measured rounds, running jobs)."""
    sim = Cluster(seed, 1000, 10000)
    warm, measured = Rounds(), Rounds()
    for i in range(warmup + rounds):
        sim.finish(freed)
        sim.apply(timed(sim.snapshot(), warm if i < warmup else measured))
    return warm, measured, len(sim.active)


def burst(seed: int, rounds: int, freed: int) -> tuple[Rounds, int]:
    """The worst case: the initial random placement is never corrected (decisions other than
    starts are not carried out), so every round finds the same ~200 migrations again."""
    sim = Cluster(seed, 1000, 10000)
    out = Rounds()
    for _ in range(rounds):
        sim.finish(freed)
        result = timed(sim.snapshot(), out)
        sim.apply(decisions.Decisions(admissions=result.admissions))
    return out, len(sim.active)


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank): with 100 rounds, the slowest but one."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def report(label: str, r: Rounds) -> None:
    placed, moved = sum(r.placed), sum(r.moved)
    print(
        f"{label}: {len(r.cpus)} rounds, {placed / len(r.cpus):.1f} processes placed and "
        f"{moved / len(r.cpus):.1f} migrations decided per round"
    )
    print(
        f"  round latency CPU: p50 {statistics.median(r.cpus) * 1000:.1f} ms, p99 {p99(r.cpus) * 1000:.1f} ms, "
        f"max {max(r.cpus) * 1000:.1f} ms; wall: p50 {statistics.median(r.walls) * 1000:.1f} ms, "
        f"p99 {p99(r.walls) * 1000:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scale benchmark of the policy core.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, well under 30 s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--freed", type=int, default=10, help="running jobs finishing before each steady round")
    args = parser.parse_args(argv)
    rounds, warmup = (20, 20) if args.quick else (100, 20)
    print("1000 nodes (1-8 CPUs), 10000 queued jobs (mixed priorities, placements, -m, 2% gangs of 4)")
    print(
        "a decision round = one decide() call on the whole snapshot: recovery, expel, continue, queue "
        "admission, memory ushering, load balancing and freezing over every node and job"
    )
    placed, wall, cpu = cold(args.seed)
    print(
        f"cold round (idle cluster): {placed} processes placed in {wall * 1000:.0f} ms wall, "
        f"{cpu * 1000:.0f} ms CPU: {placed / wall:,.0f} placements/s wall, {placed / cpu:,.0f} per CPU second"
    )
    warm, measured, active = steady(args.seed, rounds, warmup, args.freed)
    print(
        f"first round on the full cluster (its random initial placement balanced): {warm.moved[0]} migrations "
        f"and {warm.placed[0]} placements decided in {warm.cpus[0] * 1000:.1f} ms CPU"
    )
    report(
        f"steady rounds after {warmup} warm-up rounds ({active} running jobs, decisions carried out, "
        f"{args.freed} jobs finishing before each)",
        measured,
    )
    worst, _ = burst(args.seed, rounds, args.freed)
    report("worst case (the imbalance is never corrected: the same migrations are decided every round)", worst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
