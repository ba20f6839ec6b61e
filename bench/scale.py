"""Scale benchmark: `decide()` on 1,000 nodes with 10,000 queued jobs.

A decision round is one `decide()` call on the whole snapshot (recovery, expel, continue,
queue admission, ushering, balancing and freezing over every node and job); its latency is
what this measures, in CPU and wall time, as p50/p99 over rounds, each round two ways: on a
snapshot built afresh (plain), and as the control plane runs it, the jobs changed since the last
round put into a `JobIndex` and `decide()` on its snapshot (indexed, all of it timed); both must
decide the same. Figures: placements per second when one round fills an idle cluster (cold
start); the first round on a full cluster whose random initial placement the balancer corrects
(~200 migrations); steady rounds on that cluster with every decision carried out (a few jobs
finish, a few start, a few move); and a worst case where the imbalance is never corrected, so
every round decides ~200 migrations again. Not a test: run `.venv/bin/python bench/scale.py`
(`--quick` for fewer rounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from mosix.api import cluster as api_cluster
from mosix.api import job as api_job
from mosix.api import node as api_node
from mosix.client import store
from mosix.controller import collecting, metrics, plan, views
from mosix.controller import round as control
from mosix.policy import decide, decisions, index, snapshot


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


def cold(seed: int) -> tuple[int, Rounds, Rounds]:
    """One round on an idle cluster: (processes placed, the plain round, the round that first
    builds the index from all 10,000 jobs and then decides on it)."""
    rng = random.Random(seed)
    nodes = cluster_nodes(rng, 1000, 0.0)
    jobs = queued_jobs(rng, 10000, 1000)
    snap = snapshot.Snapshot(tuple(nodes), tuple(jobs), snapshot.ClusterView(), 1000.0)
    plain, indexed = Rounds(), Rounds()
    out = timed(lambda: snap, plain)
    idx = index.JobIndex()

    def build() -> snapshot.Snapshot:
        idx.update(jobs)
        return idx.snapshot_at(snap.nodes, snap.cluster, snap.now)

    if timed(build, indexed) != out:
        raise SystemExit("the indexed round decided differently from the plain one")
    return sum(len(a.nodes) for a in out.admissions), plain, indexed


class Cluster:
    """The simulated cluster between rounds: node loads and jobs, with each round's decisions
    carried out (starts, migrations, freezes, continues) and a few jobs finishing. It notes which
    jobs changed, as a control plane's watch would, for the index."""

    def __init__(self, seed: int, nodes: int, queued: int) -> None:
        self.rng = random.Random(seed)
        self.now = 1000.0
        self.nodes = cluster_nodes(self.rng, nodes, 1.0)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.jobs = {j.name: j for j in queued_jobs(self.rng, queued, nodes)}
        self.jobs.update((j.name, j) for j in running_jobs(self.rng, self.nodes, self.now))
        self.changed: dict[str, None] = dict.fromkeys(self.jobs)  # in the order they changed
        self.gone: set[str] = set()

    def _set(self, job: snapshot.JobView) -> None:
        self.jobs[job.name] = job
        self.changed[job.name] = None

    def _drop(self, name: str) -> None:
        del self.jobs[name]
        self.changed.pop(name, None)
        self.gone.add(name)

    def _load(self, name: str, delta: float) -> None:
        i = self.index[name]
        self.nodes[i] = dataclasses.replace(self.nodes[i], load=max(0.0, self.nodes[i].load + delta))

    def finish(self, count: int) -> None:
        """`count` running jobs end (their CPUs come free) and the clock moves one interval."""
        self.now += 2.0
        running = [j for j in self.jobs.values() if j.state is snapshot.JobState.RUNNING]
        for job in self.rng.sample(running, min(count, len(running))):
            self._drop(job.name)
            assert job.node is not None
            self._load(job.node, -job.cpu_demand)

    def plain(self) -> snapshot.Snapshot:
        """The whole snapshot, built afresh."""
        return snapshot.Snapshot(tuple(self.nodes), tuple(self.jobs.values()), snapshot.ClusterView(), self.now)

    def indexed(self, idx: index.JobIndex) -> snapshot.Snapshot:
        """The control plane's side of an indexed round: the jobs that changed since the last
        round into the index, then its snapshot."""
        for name in self.gone:
            idx.remove(name)
        idx.update(self.jobs[name] for name in self.changed)
        self.gone.clear()
        self.changed.clear()
        return idx.snapshot_at(tuple(self.nodes), snapshot.ClusterView(), self.now)

    def apply(self, out: decisions.Decisions) -> None:
        running = snapshot.JobState.RUNNING
        for a in out.admissions:
            job = self.jobs[a.job]
            self._drop(a.job)
            for k, node in enumerate(a.nodes):  # one running view per process (a gang runs on several nodes)
                name = a.job if len(a.nodes) == 1 else f"{a.job}/{k}"
                self._set(dataclasses.replace(job, name=name, state=running, node=node, parallel=1,
                                              started_at=self.now))
                self._load(node, job.cpu_demand)
        for m in out.migrations:
            job = self.jobs[m.job]
            self._set(dataclasses.replace(job, node=m.target, last_migration=self.now))
            self._load(m.source, -job.cpu_demand)
            self._load(m.target, job.cpu_demand)
        for f in out.freezes:
            job = self.jobs[f.job]
            self._set(dataclasses.replace(job, state=snapshot.JobState.FROZEN, frozen_reason=f.reason))
            self._load(f.node, -job.cpu_demand)
        for c in out.continues:
            job = self.jobs[c.job]
            self._set(dataclasses.replace(job, state=running, node=c.node, frozen_reason=None))
            self._load(c.node, job.cpu_demand)


@dataclasses.dataclass
class Rounds:
    """Per-round figures: wall and CPU seconds of `decide()`, processes placed, migrations."""

    walls: list[float] = dataclasses.field(default_factory=list)
    cpus: list[float] = dataclasses.field(default_factory=list)
    placed: list[int] = dataclasses.field(default_factory=list)
    moved: list[int] = dataclasses.field(default_factory=list)


def timed(make: Callable[[], snapshot.Snapshot], into: Rounds) -> decisions.Decisions:
    """`make()` then `decide()` on what it made, both timed into `into`."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = decide.decide(make())
    into.cpus.append(time.process_time() - cpu)
    into.walls.append(time.perf_counter() - wall)
    into.placed.append(sum(len(a.nodes) for a in out.admissions))
    into.moved.append(len(out.migrations))
    return out


@dataclasses.dataclass
class Run:
    """The same rounds measured both ways: `plain` decides on a snapshot built afresh (the round
    walks every job); `indexed` brings the index up to date with the jobs that changed, then decides
    on its snapshot. Both must decide the same, every round."""

    plain: Rounds = dataclasses.field(default_factory=Rounds)
    indexed: Rounds = dataclasses.field(default_factory=Rounds)

    def round(self, sim: Cluster, idx: index.JobIndex) -> decisions.Decisions:
        plain = timed(sim.plain, self.plain)
        fast = timed(lambda: sim.indexed(idx), self.indexed)
        if fast != plain:
            raise SystemExit("the indexed round decided differently from the plain one")
        return plain


def steady(seed: int, rounds: int, warmup: int, freed: int) -> tuple[Run, Run, int]:
    """A full cluster with its decisions carried out: `warmup` rounds to settle (the first
    of them balances the initial, random placement), then `rounds` measured rounds, `freed`
    jobs finishing before each. Returns (warm-up rounds, measured rounds, running jobs)."""
    sim = Cluster(seed, 1000, 10000)
    idx = index.JobIndex()
    warm, measured = Run(), Run()
    for i in range(warmup + rounds):
        sim.finish(freed)
        sim.apply((warm if i < warmup else measured).round(sim, idx))
    return warm, measured, sum(1 for j in sim.jobs.values() if j.state is snapshot.JobState.RUNNING)


def burst(seed: int, rounds: int, freed: int) -> Run:
    """The worst case: the initial random placement is never corrected (decisions other than
    starts are not carried out), so every round finds the same ~200 migrations again."""
    sim = Cluster(seed, 1000, 10000)
    idx = index.JobIndex()
    out = Run()
    for _ in range(rounds):
        sim.finish(freed)
        result = out.round(sim, idx)
        sim.apply(decisions.Decisions(admissions=result.admissions))
    return out


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank): with 100 rounds, the slowest but one."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def report(label: str, run: Run) -> None:
    r = run.indexed
    placed, moved = sum(r.placed), sum(r.moved)
    print(
        f"{label}: {len(r.cpus)} rounds, {placed / len(r.cpus):.1f} processes placed and "
        f"{moved / len(r.cpus):.1f} migrations decided per round"
    )
    for name, rounds in (("indexed", run.indexed), ("plain", run.plain)):
        print(
            f"  {name:7s} round latency CPU: p50 {statistics.median(rounds.cpus) * 1000:5.1f} ms, "
            f"p99 {p99(rounds.cpus) * 1000:5.1f} ms, max {max(rounds.cpus) * 1000:5.1f} ms; "
            f"wall: p50 {statistics.median(rounds.walls) * 1000:5.1f} ms, p99 {p99(rounds.walls) * 1000:5.1f} ms"
        )
    print(
        f"  indexed/plain CPU: p50 {statistics.median(run.indexed.cpus) / statistics.median(run.plain.cpus):.2f}x, "
        f"p99 {p99(run.indexed.cpus) / p99(run.plain.cpus):.2f}x"
    )


# ---------------------------------------------------------------- the controller's side of a round
# MOSIX objects to views, decide(), the plan (status patches and events) and the metrics, over 1,000
# MosixNodes and 10,000 queued MosixJobs. Between rounds the store and the agents are simulated on the
# objects: every patch applied (resourceVersion bumped) through `round.apply_plan`, placed jobs start,
# migrations arrive, a few jobs finish, nodes report their load. Measured rounds plan with the views kept
# between rounds, as the control plane runs; every fifth also with fresh views (every job mapped and
# visited again), which must plan the same patches. Jobs of one process only: the simulation moves whole jobs.

EPOCH = 1.8e9  # the bench's clock starts here: timestamps parse as real ones


def stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def job_object(view: snapshot.JobView, now: float) -> api_job.MosixJob:
    """The `MosixJob` a control plane would read for `view`."""
    spec: dict[str, Any] = {"command": ["testload"], "placement": view.placement.value}
    if view.queued:
        spec["queue"] = {"position": view.position, **({} if view.priority is None else {"priority": view.priority})}
    if view.node_ref is not None:
        spec["node"] = view.node_ref
    if view.ranges:
        spec["nodeRanges"] = [{"first": a, "last": b} for a, b in view.ranges]
    if view.memory_mb:
        spec["memoryMb"] = view.memory_mb
    status: dict[str, Any] = {"phase": view.state.value}
    if view.home is not None:
        status["homeNode"] = view.home
    if view.node is not None:
        status["node"] = view.node
    if view.started_at is not None:
        status["startTime"] = stamp(view.started_at)
    if view.last_migration is not None:
        status["lastMigrationTime"] = stamp(view.last_migration)
    return api_job.MosixJob.model_validate({
        "metadata": {"name": view.name, "namespace": "default", "resourceVersion": "1",
                     "creationTimestamp": stamp(now - 86400 + view.submitted)},
        "spec": spec, "status": status})


def node_object(view: snapshot.NodeView, heartbeat: float) -> api_node.MosixNode:
    return api_node.MosixNode.model_validate({
        "metadata": {"name": view.name},
        "spec": {"number": view.number, "address": view.address, "block": view.block},
        "status": {"state": "Running Normally", "heartbeat": stamp(heartbeat), "cpus": view.cpus,
                   "speed": int(view.speed), "load": view.load, "accept": True, "avail": True,
                   "memory": {"availableMb": view.memory_free_mb, "totalMb": view.memory_total_mb}}})


_QUICK = {"priority": "priority", "where": "where", "message": "message"}


@dataclasses.dataclass
class Figures:
    """CPU and wall seconds of each round's controller side."""

    cpus: list[float] = dataclasses.field(default_factory=list)
    walls: list[float] = dataclasses.field(default_factory=list)
    patches: list[int] = dataclasses.field(default_factory=list)
    collections: list[float] = dataclasses.field(default_factory=list)  # wall seconds of full GCs in the round


class FullCollections:
    """Wall seconds the garbage collector spent in full (generation 2) collections, as `gc.callbacks` tells:
    with ~14,000 objects and their views alive, one such collection takes hundreds of ms, and lands in
    whichever round allocates past the threshold."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began


COLLECTIONS = FullCollections()


class Store:
    """The jobs and nodes as the store holds them, with the agents' side of each round carried out."""

    def __init__(self, seed: int, nodes: list[snapshot.NodeView], jobs: list[snapshot.JobView]) -> None:
        self.rng = random.Random(seed)
        self.now = EPOCH
        self.jobs = {j.name: job_object(dataclasses.replace(j, parallel=1, started_at=None if j.started_at is None
                                                            else EPOCH - 1000.0 + j.started_at,
                                                            last_migration=None if j.last_migration is None
                                                            else EPOCH - 1000.0 + j.last_migration), EPOCH)
                     for j in jobs}
        self.nodes = {n.name: node_object(n, EPOCH) for n in nodes}
        self.conf = api_cluster.MosixCluster.model_validate({"metadata": {"name": "mosix"},
                                                         "spec": {"deadAfterSeconds": 86400}})
        self.rv = 1

    def _put(self, key: str, j: api_job.MosixJob, status: api_job.MosixJobStatus) -> api_job.MosixJob:
        self.rv += 1
        new = self.jobs[key] = j.model_copy(update={"status": status, "metadata": j.metadata.model_copy(
            update={"resource_version": str(self.rv)})})
        return new

    def patch(self, key: str, patch: plan.Patch) -> api_job.MosixJob:
        """A status patch, as the store applies it (a merge patch; those of display fields only copied)."""
        j = self.jobs[key]
        if patch.keys() <= _QUICK.keys():
            status = j.status.model_copy(update={_QUICK[k]: v for k, v in patch.items()})
        else:
            status = api_job.MosixJobStatus.model_validate(store.merge_patch(j.status.wire(), patch))
        return self._put(key, j, status)

    def agents(self) -> None:
        """What the agents do before the next round: placed jobs run, moves arrive; nodes report their load."""
        for key, j in list(self.jobs.items()):
            st = j.status
            if st.phase == api_job.Phase.PENDING and st.node:
                self._put(key, j, st.model_copy(update={"phase": api_job.Phase.RUNNING, "start_time": stamp(self.now)}))
            elif st.target_node:
                self._put(key, j, st.model_copy(update={"node": st.target_node, "target_node": None,
                                                        "last_migration_time": stamp(self.now),
                                                        "migrations": st.migrations + 1}))
        self._loads()

    def _loads(self) -> None:
        load = dict.fromkeys(self.nodes, 0)
        busy = (api_job.Phase.RUNNING, api_job.Phase.PENDING)
        for j in self.jobs.values():
            if j.status.phase in busy and j.status.node and not j.status.frozen:
                load[j.status.node] += 1
        for name, n in self.nodes.items():
            if n.status.load != load[name]:
                self.nodes[name] = n.model_copy(update={"status": n.status.model_copy(update={"load": load[name]})})

    def finish(self, count: int) -> None:
        """`count` running jobs end and leave the store; the clock moves one interval."""
        self.now += 2.0
        running = [k for k, j in self.jobs.items() if j.status.phase == api_job.Phase.RUNNING]
        for key in self.rng.sample(running, min(count, len(running))):
            del self.jobs[key]
        self._loads()


def plan_once(st: Store, kept: views.JobViews, into: Figures) -> plan.Plan:
    """The controller's side of one round (views, decide, plan, metrics), timed."""
    wall, cpu, collected = time.perf_counter(), time.process_time(), COLLECTIONS.seconds
    nodes = list(st.nodes.values())
    snap = views.snapshot_of(st.jobs, nodes, st.conf, st.now, kept)
    result = decide.decide(snap)
    out = control.plan_round(st.jobs, snap, result, st.conf.spec.queue.default_priority, kept)
    metrics.observe(snap, result, 0.0)
    into.cpus.append(time.process_time() - cpu)
    into.walls.append(time.perf_counter() - wall)
    into.patches.append(len(out.patches))
    into.collections.append(COLLECTIONS.seconds - collected)
    return out


def controller_rounds(seed: int, nodes: list[snapshot.NodeView], jobs: list[snapshot.JobView], *, warmup: int,
                      count: int, freed: int, fresh_every: int) -> tuple[Figures, Figures]:
    """`warmup` then `count` rounds planned with kept views, every `fresh_every`th measured round also planned
    with fresh views (much slower); returns (kept, fresh) figures of the measured rounds."""
    st = Store(seed, nodes, jobs)
    kept = views.JobViews()
    measured, fresh = Figures(), Figures()
    gc.callbacks.append(COLLECTIONS)
    try:
        with collecting.BetweenRounds() as gcs:  # as the control loops do: full collections between rounds
            for i in range(warmup + count):
                st.finish(freed)
                if i >= warmup and (i - warmup) % fresh_every == 0:
                    again = views.JobViews()
                    check = plan_once(st, again, fresh)
                else:
                    check = None
                out = plan_once(st, kept, measured if i >= warmup else Figures())
                if check is not None and check.patches != out.patches:
                    raise SystemExit("the controller round with kept views planned differently from one with fresh "
                                     "views")
                control.apply_plan(st.patch, dict(st.jobs), out, kept)  # the jobs as the round read them
                st.agents()
                gcs.after_round()
    finally:
        gc.callbacks.remove(COLLECTIONS)
    return measured, fresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scale benchmark of the policy core.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--freed", type=int, default=10, help="running jobs finishing before each steady round")
    args = parser.parse_args(argv)
    rounds, warmup = (20, 20) if args.quick else (100, 20)
    print("1000 nodes (1-8 CPUs), 10000 queued jobs (mixed priorities, placements, -m, 2% gangs of 4)")
    print(
        "a decision round = one decide() call on the whole snapshot: recovery, expel, continue, queue "
        "admission, memory ushering, load balancing and freezing over every node and job; "
        "plain: on a snapshot built afresh; indexed: the changed jobs put into the index, its snapshot, "
        "decide() on it (timed together); every round both decide, and must decide the same"
    )
    placed, plain, indexed = cold(args.seed)
    for name, r in (("plain", plain), ("indexed, index built from every job in the round", indexed)):
        print(
            f"cold round (idle cluster), {name}: {placed} processes placed in {r.walls[0] * 1000:.0f} ms wall, "
            f"{r.cpus[0] * 1000:.0f} ms CPU: {placed / r.walls[0]:,.0f} placements/s wall, "
            f"{placed / r.cpus[0]:,.0f} per CPU second"
        )
    warm, measured, active = steady(args.seed, rounds, warmup, args.freed)
    print(
        f"first round on the full cluster (its random initial placement balanced): {warm.indexed.moved[0]} "
        f"migrations and {warm.indexed.placed[0]} placements decided in {warm.indexed.cpus[0] * 1000:.1f} ms CPU "
        f"indexed (the index built from every job), {warm.plain.cpus[0] * 1000:.1f} ms plain"
    )
    report(
        f"steady rounds after {warmup} warm-up rounds ({active} running jobs, decisions carried out, "
        f"{args.freed} jobs finishing before each)",
        measured,
    )
    worst = burst(args.seed, rounds, args.freed)
    report("worst case (the imbalance is never corrected: the same migrations are decided every round)", worst)
    sim = Cluster(args.seed, 1000, 10000)
    kept, fresh = controller_rounds(args.seed, sim.nodes, list(sim.jobs.values()), warmup=warmup, count=rounds,
                                    freed=args.freed, fresh_every=5)
    print(f"controller side of steady rounds (MosixJob/MosixNode objects to views, decide, plan, metrics; no gangs; "
          f"every patch applied and carried out between rounds; {statistics.median(kept.patches):.0f} status "
          f"patches per round, median):")
    for name, f in (("kept views", kept), ("fresh views", fresh)):
        print(f"  {name:11s} {len(f.cpus):3d} rounds, CPU: p50 {statistics.median(f.cpus) * 1000:6.1f} ms, "
              f"p99 {p99(f.cpus) * 1000:6.1f} ms; wall: p50 {statistics.median(f.walls) * 1000:6.1f} ms, "
              f"p99 {p99(f.walls) * 1000:6.1f} ms")
        full = [c for c in f.collections if c > 0.0]
        if full:
            apart = [w - c for w, c in zip(f.walls, f.collections, strict=True)]
            print(f"  {'':11s} full garbage collections in {len(full)} of these rounds, {max(full) * 1000:.0f} ms "
                  f"at most; without them, wall: p50 {statistics.median(apart) * 1000:6.1f} ms, "
                  f"p99 {p99(apart) * 1000:6.1f} ms")
    print(f"  kept/fresh CPU: p50 {statistics.median(kept.cpus) / statistics.median(fresh.cpus):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
