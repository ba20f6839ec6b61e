"""Scale benchmark: `decide()` on 1,000 nodes with 10,000 queued jobs.

Two figures: placements per second when a round has many slots to fill (cold start), and
the latency of one steady-state decision round (a few jobs finished, a few start, the
balancer and the freezer look at everything), as p50/p99 over rounds. Not a test: run
`.venv/bin/python bench/scale.py` (`--quick` for fewer rounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time

from mosix.policy import decide, snapshot


def cluster_nodes(rng: random.Random, count: int, busy: float) -> list[snapshot.NodeView]:
    """`count` nodes of 1-8 CPUs and varied speeds, each `busy` loaded (0.0-1.0 of its CPUs)."""
    nodes = []
    for i in range(1, count + 1):
        cpus = rng.choice((1, 2, 4, 8))
        total = cpus * 4096
        nodes.append(snapshot.NodeView(
            name=f"node-{i:04d}", number=i, address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", cpus=cpus,
            speed=rng.choice((5000.0, 7500.0, 10000.0, 15000.0)), load=round(cpus * busy),
            memory_free_mb=int(total * rng.uniform(0.3, 0.9)), memory_total_mb=total,
            block=rng.random() < 0.01, local=True))
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
        jobs.append(snapshot.JobView(
            name=f"job-{i:05d}", priority=rng.choice((None, None, None, 20, 60)), position=i * 10, submitted=i,
            home=f"node-{rng.randint(1, nodes):04d}", placement=kind, node_ref=ref, ranges=ranges,
            memory_mb=rng.choice((0, 0, 500, 2000)), parallel=4 if rng.random() < 0.02 else 1))
    return jobs


def running_jobs(rng: random.Random, nodes: list[snapshot.NodeView], now: float) -> list[snapshot.JobView]:
    """One running job per busy CPU, so the balancer and the freezer have work to scan."""
    jobs = []
    for node in nodes:
        for k in range(int(node.load)):
            jobs.append(snapshot.JobView(
                name=f"run-{node.number:04d}-{k}", state=snapshot.JobState.RUNNING, queued=True,
                node=node.name, home=node.name, started_at=now - rng.uniform(0, 600),
                last_migration=None if rng.random() < 0.8 else now - rng.uniform(0, 60)))
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


def steady(seed: int, rounds: int, freed: int) -> tuple[list[float], list[float], int, int]:
    """`rounds` rounds on a full cluster where `freed` CPUs came free before each:
    (wall latencies, CPU latencies, processes placed, running jobs scanned)."""
    rng = random.Random(seed)
    nodes = cluster_nodes(rng, 1000, 1.0)
    queued = queued_jobs(rng, 10000, 1000)
    now = 1000.0
    running = running_jobs(rng, nodes, now)
    walls: list[float] = []
    cpus: list[float] = []
    placed = 0
    for _ in range(rounds):
        now += 2.0
        for index in rng.sample(range(len(nodes)), freed):
            node = nodes[index]
            nodes[index] = dataclasses.replace(node, load=max(0.0, node.load - 1))
        snap = snapshot.Snapshot(tuple(nodes), tuple(queued) + tuple(running), snapshot.ClusterView(), now)
        wall, cpu = time.perf_counter(), time.process_time()
        out = decide.decide(snap)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
        started = {a.job for a in out.admissions}
        placed += sum(len(a.nodes) for a in out.admissions)
        queued = [j for j in queued if j.name not in started]
        by_name = {n.name: i for i, n in enumerate(nodes)}
        for admission in out.admissions:
            for name in admission.nodes:
                node = nodes[by_name[name]]
                nodes[by_name[name]] = dataclasses.replace(node, load=node.load + 1)
    return walls, cpus, placed, len(running)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scale benchmark of the policy core.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, well under 30 s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--freed", type=int, default=10, help="CPUs freed between steady rounds")
    args = parser.parse_args(argv)
    rounds = 20 if args.quick else 100
    placed, wall, cpu = cold(args.seed)
    print("1000 nodes (1-8 CPUs), 10000 queued jobs (mixed priorities, placements, -m, 2% gangs of 4)")
    print(f"cold round (idle cluster): {placed} processes placed in {wall * 1000:.0f} ms wall, "
          f"{cpu * 1000:.0f} ms CPU: {placed / wall:,.0f} placements/s wall, {placed / cpu:,.0f} per CPU second")
    walls, cpus, started, scanned = steady(args.seed, rounds, args.freed)
    per_round = started / rounds
    print(f"steady rounds: {rounds} rounds on a full cluster ({scanned} running jobs balanced and checked "
          f"for freezing), {args.freed} CPUs freed before each, {per_round:.1f} processes placed per round")
    print(f"  round latency wall: p50 {statistics.median(walls) * 1000:.1f} ms, p99 {p99(walls) * 1000:.1f} ms; "
          f"CPU: p50 {statistics.median(cpus) * 1000:.1f} ms, p99 {p99(cpus) * 1000:.1f} ms")
    print(f"  per placement (round CPU p99 / placements per round): {p99(cpus) / max(per_round, 1) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
