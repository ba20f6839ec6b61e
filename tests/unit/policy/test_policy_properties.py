"""Property tests: the invariants the policy promises, under random inputs."""

from __future__ import annotations

import dataclasses
import types

from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.policy import decide, decisions, freezing, ledger, queue, snapshot

QUEUED = snapshot.JobState.QUEUED
RUNNING = snapshot.JobState.RUNNING

# ---------------------------------------------------------------- queue order

Op = tuple[str, int, int]
ops = st.lists(st.tuples(st.sampled_from(["advance", "retard", "cngpri", "run", "delete", "add"]),
                         st.integers(0, 30), st.sampled_from([10, 20, 50, 60])), max_size=40)


def _others(order: list[snapshot.JobView], name: str) -> list[str]:
    return [j.name for j in order if j.name != name]


@settings(max_examples=150, deadline=None)
@given(ops=ops, initial=st.lists(st.sampled_from([None, 20, 50, 60]), min_size=1, max_size=12))
def test_queue_order_under_random_operations(ops: list[Op], initial: list[int | None]) -> None:
    jobs = [snapshot.JobView(name=f"j{i}", priority=p, position=i * 10, submitted=i) for i, p in enumerate(initial)]
    serial = len(jobs)
    for op, index, priority in ops:
        before = queue.order(jobs)
        if op == "add":
            jobs.append(snapshot.JobView(name=f"j{serial}", priority=priority, position=serial * 10,
                                         submitted=serial))
            assert queue.order(jobs)[:-1] == before or any(j.priority != priority for j in before)
            serial += 1
            continue
        if not jobs:
            continue
        target = jobs[index % len(jobs)]
        name = target.name
        at = jobs.index(target)
        if op == "advance":
            jobs[at] = dataclasses.replace(target, position=queue.advance(jobs, name))
        elif op == "retard":
            jobs[at] = dataclasses.replace(target, position=queue.retard(jobs, name))
        elif op == "cngpri":
            jobs[at] = queue.cngpri(target, priority)
        elif op == "run":
            jobs[at] = queue.run(target)
        else:
            jobs = list(queue.delete(jobs, name))
        after = queue.order(jobs)
        # every operation leaves the others in the same relative order
        assert _others(after, name) == _others(before, name)
        keys = [queue.key(j, snapshot.DEFAULT_PRIORITY) for j in after]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        if op in ("advance", "retard") and not jobs[at].run_now:
            pri = jobs[at].effective_priority(snapshot.DEFAULT_PRIORITY)
            group = [j.name for j in after if not j.run_now
                     and j.effective_priority(snapshot.DEFAULT_PRIORITY) == pri]
            assert group[0 if op == "advance" else -1] == name
        if op == "run":
            assert after[0].run_now


# ---------------------------------------------------------------- random clusters

@st.composite
def nodes(draw: st.DrawFn) -> list[snapshot.NodeView]:
    count = draw(st.integers(1, 8))
    out = []
    for i in range(1, count + 1):
        cpus = draw(st.integers(1, 4))
        out.append(snapshot.NodeView(
            name=f"n{i}", number=i, address=f"10.0.0.{i}", cpus=cpus, speed=draw(st.sampled_from([1.0, 2.0, 3.0])),
            memory_free_mb=draw(st.sampled_from([200, 1000, 4000])), memory_total_mb=4000,
            alive=draw(st.booleans()) or i == 1, block=draw(st.integers(0, 5)) == 0,
            expel=draw(st.integers(0, 6)) == 0, dontgo=draw(st.integers(0, 6)) == 0,
            outsider=draw(st.integers(0, 6)) == 0, local=draw(st.integers(0, 6)) != 0))
    return out


@st.composite
def queued_jobs(draw: st.DrawFn, count: int) -> list[snapshot.JobView]:
    out = []
    for i in range(count):
        gang = draw(st.sampled_from([1, 1, 1, 2, 3, 5]))
        out.append(snapshot.JobView(
            name=f"q{i}", priority=draw(st.sampled_from([None, 20, 60])), position=i, submitted=i,
            placement=draw(st.sampled_from(list(snapshot.PlacementKind))), home="n1",
            node_ref=str(draw(st.integers(1, 8))), ranges=((1, draw(st.integers(1, 8))),),
            grid_class=draw(st.sampled_from([0, 0, 1])), memory_mb=draw(st.sampled_from([0, 0, 500, 2000])),
            parallel=gang, queued=draw(st.integers(0, 4)) != 0,
            state=QUEUED if draw(st.booleans()) else snapshot.JobState.PENDING))
    return out


def with_loads(nodes_: list[snapshot.NodeView], jobs: list[snapshot.JobView]) -> list[snapshot.NodeView]:
    load: dict[str, float] = {}
    for job in jobs:
        if job.node is not None and job.state is RUNNING:
            load[job.node] = load.get(job.node, 0.0) + job.cpu_demand
    return [dataclasses.replace(n, load=load.get(n.name, 0.0)) for n in nodes_]


def check_targets(snap: snapshot.Snapshot, out: decisions.Decisions) -> None:
    """No decision sends anything to a dead, blocked, expelling or dontgo node, or where its
    memory need does not fit given this round's other arrivals and departures."""
    by_node = {n.name: n for n in snap.nodes}
    jobs = {j.name: j for j in snap.jobs}
    balance = {n.name: n.memory_free_mb for n in snap.nodes}
    arrivals: list[tuple[str, str]] = []
    for a in out.admissions:
        arrivals += [(a.job, n) for n in a.nodes]
    for m in out.migrations:
        arrivals.append((m.job, m.target))
        balance[m.source] += jobs[m.job].memory_mb
    for f in out.freezes:
        balance[f.node] += jobs[f.job].memory_mb
    arrivals += [(r.job, r.target) for r in out.recoveries]
    arrivals += [(c.job, c.node) for c in out.continues]
    for job, name in arrivals:
        node = by_node[name]
        assert node.alive and not node.block and not node.expel and not node.dontgo, (job, node)
        if jobs[job].grid_class == 0:
            assert node.local and not node.outsider
        balance[name] -= jobs[job].memory_mb
    for name, left in balance.items():
        assert left >= min(0, by_node[name].memory_free_mb), name


@settings(max_examples=100, deadline=None)
@given(cluster=nodes(), data=st.data())
def test_admissions_respect_gangs_slots_and_nodes(cluster: list[snapshot.NodeView], data: st.DataObject) -> None:
    jobs = data.draw(queued_jobs(data.draw(st.integers(0, 12))))
    snap = snapshot.Snapshot(tuple(cluster), tuple(jobs), snapshot.ClusterView(), 0.0)
    out = decide.decide(snap)
    check_targets(snap, out)
    by_name = {j.name: j for j in jobs}
    slot_use: dict[str, int] = {}
    for admission in out.admissions:
        job = by_name[admission.job]
        assert len(admission.nodes) == job.parallel, "a gang is all or nothing"
        if job.queued and (job.placement is not snapshot.PlacementKind.HOME or job.parallel > 1):
            for name in admission.nodes:
                slot_use[name] = slot_use.get(name, 0) + 1
    for n in cluster:
        assert slot_use.get(n.name, 0) <= n.cpus, "queued jobs only take idle CPUs"
    usable = sum(n.cpus for n in cluster if n.alive and not n.block and not n.expel and n.accept and not n.dontgo)
    assert sum(len(a.nodes) for a in out.admissions if by_name[a.job].queued) <= usable


# ---------------------------------------------------------------- multi-round balancing

@settings(max_examples=60, deadline=None)
@given(cluster=nodes(), data=st.data())
def test_no_job_moves_again_within_the_hysteresis(cluster: list[snapshot.NodeView], data: st.DataObject) -> None:
    hysteresis = data.draw(st.sampled_from([0.0, 5.0, 30.0]))
    settings_ = snapshot.ClusterView(hysteresis_s=hysteresis, min_gain=data.draw(st.sampled_from([0.0, 0.2])),
                                     migration_cost_s=data.draw(st.sampled_from([0.0, 1.0])))
    jobs = [snapshot.JobView(name=f"j{i}", state=RUNNING, node="n1", home="n1", started_at=0.0,
                             memory_mb=data.draw(st.sampled_from([0, 100])))
            for i in range(data.draw(st.integers(1, 12)))]
    now = 0.0
    moved: dict[str, list[tuple[float, str, str]]] = {}
    for _ in range(data.draw(st.integers(1, 12))):
        now += data.draw(st.sampled_from([0.5, 2.0, 10.0]))
        # the cluster changes under the balancer: nodes come and go, jobs finish
        cluster = [dataclasses.replace(n, alive=data.draw(st.booleans()) or n.number == 1) for n in cluster]
        jobs = [j for j in jobs if data.draw(st.integers(0, 9)) != 0]
        jobs = [j if j.node is not None and any(n.name == j.node and n.alive for n in cluster)
                else dataclasses.replace(j, node="n1") for j in jobs]
        snap = snapshot.Snapshot(tuple(with_loads(cluster, jobs)), tuple(jobs), settings_, now)
        out = decide.decide(snap)
        check_targets(snap, out)
        index = {j.name: i for i, j in enumerate(jobs)}
        for m in out.migrations:
            history = moved.setdefault(m.job, [])
            if history:
                assert now - history[-1][0] >= hysteresis, "moved again within the hysteresis"
            history.append((now, m.source, m.target))
            jobs[index[m.job]] = dataclasses.replace(jobs[index[m.job]], node=m.target, last_migration=now)
        assert len({m.job for m in out.migrations}) == len(out.migrations)


@settings(max_examples=100, deadline=None)
@given(cluster=nodes(), data=st.data())
def test_a_round_never_undoes_itself(cluster: list[snapshot.NodeView], data: st.DataObject) -> None:
    """Right after a round's moves are carried out, the next round (hysteresis 0) moves
    none of them straight back: every move strictly helps the mover."""
    settings_ = snapshot.ClusterView(hysteresis_s=0.0, migration_cost_s=0.0, min_gain=0.0)
    jobs = [snapshot.JobView(name=f"j{i}", state=RUNNING, node=f"n{data.draw(st.integers(1, len(cluster)))}",
                             home="n1", started_at=0.0) for i in range(data.draw(st.integers(1, 12)))]
    jobs = [j for j in jobs if any(n.name == j.node and n.alive for n in cluster)]
    snap = snapshot.Snapshot(tuple(with_loads(cluster, jobs)), tuple(jobs), settings_, 100.0)
    first = decide.decide(snap)
    sources = {m.job: m.source for m in first.migrations}
    moved = [dataclasses.replace(j, node=next(m.target for m in first.migrations if m.job == j.name))
             if j.name in sources else j for j in jobs]
    again = decide.decide(snapshot.Snapshot(tuple(with_loads(cluster, moved)), tuple(moved), settings_, 100.0))
    assert not [m for m in again.migrations if sources.get(m.job) == m.target]


# ---------------------------------------------------------------- freezing

@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_frozen_count_never_exceeds_what_the_limits_require(data: st.DataObject) -> None:
    cpus = data.draw(st.integers(1, 4))
    limits = {0: data.draw(st.sampled_from([0.5, 1.0, 2.0])), 1: data.draw(st.sampled_from([0.5, 1.0, 3.0]))}
    jobs = [snapshot.JobView(name=f"j{i}", state=RUNNING, node="n1", home=data.draw(st.sampled_from(["n1", "n2"])),
                             grid_class=data.draw(st.sampled_from([0, 1, 2])), started_at=float(i),
                             migratable=data.draw(st.integers(0, 5)) != 0,
                             cpu_demand=data.draw(st.sampled_from([0.5, 1.0])))
            for i in range(data.draw(st.integers(0, 15)))]
    extra = data.draw(st.sampled_from([0.0, 0.5, 2.0]))
    load = extra + sum(j.cpu_demand for j in jobs)
    node = snapshot.NodeView(name="n1", number=1, cpus=cpus, load=load, memory_free_mb=1000)
    cluster = snapshot.ClusterView(freeze_limits=types.MappingProxyType(limits))
    frozen = freezing.freeze(snapshot.Snapshot((node,), tuple(jobs), cluster, 50.0))
    by_name = {j.name: j for j in jobs}
    after = load - sum(by_name[f.job].cpu_demand for f in frozen)
    names = {f.job for f in frozen}
    present = {j.grid_class for j in jobs if j.name not in names}
    for f in frozen:
        job = by_name[f.job]
        assert f.reason is snapshot.FreezeReason.AUTO
        # continuing any one of them would put the node back over that job's limit, or over
        # the limit of a class that is within its limit now
        ceilings = [limits.get(c, float("inf")) * cpus + ledger.EPSILON for c in present | {job.grid_class}]
        assert (after + job.cpu_demand > limits[job.grid_class] * cpus + ledger.EPSILON
                or any(after <= c < after + job.cpu_demand for c in ceilings))
    for grid_class, limit in limits.items():
        if after > limit * cpus + ledger.EPSILON:
            assert all(j.name in names or not j.migratable for j in jobs if j.grid_class == grid_class)
