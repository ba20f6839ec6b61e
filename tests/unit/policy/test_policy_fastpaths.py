"""The policy's fast paths decide exactly what a plain reference decides, on random snapshots.

The balancer caches ranked targets per job signature, weighs targets with their side of the
sums precomputed, stops at the first target that gains too little, and sorts a node's jobs
only when it examines that node; the queue heapifies flat entries instead of calling `key`;
`_why_not` stops at the first usable node. Each reference below is the obvious version:
rank every node, weigh every target with the public `gain`/`saved`/`levelled`/`cost`.
"""

from __future__ import annotations

import dataclasses
import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.policy import balancing, decisions, ledger, placement, queue, snapshot

RUNNING = snapshot.JobState.RUNNING
NOW = 1000.0


@st.composite
def clusters(draw: st.DrawFn) -> snapshot.Snapshot:
    """Nodes of mixed speeds, CPUs, memory and policies; running jobs of mixed ages, memory,
    classes, homes and hysteresis; knobs drawn too."""
    count = draw(st.integers(2, 14))
    nodes = []
    for i in range(1, count + 1):
        nodes.append(
            snapshot.NodeView(
                name=f"n{i}",
                number=i,
                address=f"10.0.0.{i}",
                cpus=draw(st.sampled_from([1, 1, 2, 4])),
                speed=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
                memory_free_mb=draw(st.sampled_from([300, 4000, 9000])),
                memory_total_mb=9000,
                alive=draw(st.integers(0, 9)) != 0,
                block=draw(st.integers(0, 9)) == 0,
                local=draw(st.integers(0, 6)) != 0,
                outsider=draw(st.integers(0, 9)) == 0,
                dont_take=draw(st.integers(0, 9)) == 0,
                guests_max=draw(st.sampled_from([0, 1, 10])),
            )
        )
    jobs = []
    for i in range(draw(st.integers(0, 30))):
        jobs.append(
            snapshot.JobView(
                name=f"j{i:02d}",
                state=draw(st.sampled_from([RUNNING, RUNNING, RUNNING, snapshot.JobState.MIGRATING])),
                node=f"n{draw(st.integers(1, count))}",
                home=f"n{draw(st.integers(1, count))}",
                started_at=NOW - draw(st.sampled_from([0.0, 3.0, 30.0, 300.0, 3000.0])),
                last_migration=draw(st.sampled_from([None, None, NOW - 5.0, NOW - 100.0])),
                memory_mb=draw(st.sampled_from([0, 0, 200, 3000])),
                grid_class=draw(st.sampled_from([0, 0, 1])),
                cpu_demand=draw(st.sampled_from([1.0, 1.0, 0.5])),
                locked=draw(st.integers(0, 9)) == 0,
                expected_remaining_s=draw(st.sampled_from([None, None, 10.0, 500.0])),
            )
        )
    load: dict[str, float] = {}
    for job in jobs:
        assert job.node is not None
        load[job.node] = load.get(job.node, 0.0) + job.cpu_demand
    nodes = [dataclasses.replace(n, load=load.get(n.name, 0.0) + draw(st.sampled_from([0.0, 0.0, 1.0]))) for n in nodes]
    cluster = snapshot.ClusterView(
        min_gain=draw(st.sampled_from([0.0, 0.2, 0.5])),
        hysteresis_s=draw(st.sampled_from([0.0, 30.0])),
        migration_cost_s=draw(st.sampled_from([0.0, 1.0, 20.0])),
        balance_sources=draw(st.sampled_from([1, 3, 256])),
    )
    return snapshot.Snapshot(tuple(nodes), tuple(jobs), cluster, NOW)


def reference_worth(
    led: ledger.Ledger,
    job: snapshot.JobView,
    source: snapshot.NodeView,
    target: snapshot.NodeView,
    pending: dict[str, float],
) -> float | None:
    if balancing.gain(led, job, source, target) <= led.cluster.min_gain:
        return None
    total = max(
        balancing.saved(led, job, source, target, pending), balancing.levelled(job, source, target, pending, led.now)
    )
    return total if total > balancing.cost(job, led.cluster) else None


def reference_balance(led: ledger.Ledger) -> list[tuple[str, str, str]]:
    """Slowest node first (ties: name); its first two jobs by remaining time; each weighed
    against the five best-ranked eligible nodes, every node ranked afresh."""
    pool: dict[str, list[snapshot.JobView]] = {}
    for job in led.in_state(RUNNING):
        if balancing.movable(job, led.now, led.cluster) and led.alive(job.node) and job.name not in led.decided:
            assert job.node is not None
            pool.setdefault(job.node, []).append(job)
    for jobs in pool.values():
        jobs.sort(key=lambda j: (-balancing.remaining(j, led.now), j.name))
    pending: dict[str, float] = {}
    for job in led.in_state(RUNNING, snapshot.JobState.MIGRATING):
        if job.node is not None:
            pending[job.node] = pending.get(job.node, 0.0) + balancing.remaining(job, led.now)
    done: set[str] = set()
    moves = []
    for _ in range(led.cluster.balance_sources):
        open_ = [n for n in pool if pool[n] and n not in done]
        if not open_:
            break
        name = min(open_, key=lambda n: (-ledger.unit_time(led.nodes[n], led.load[n]), n))
        source = led.nodes[name]
        done.add(name)
        for job in pool[name][:2]:
            ranked = sorted(led.snapshot.nodes, key=lambda n: led.rank(n, job.cpu_demand, False))
            targets = [n for n in ranked if placement.eligible(led, n, job, slot=False)][:5]
            best: tuple[snapshot.NodeView, float] | None = None
            for target in targets:
                if target.name == name:
                    continue
                total = reference_worth(led, job, source, target, pending)
                if total is not None and (best is None or total > best[1]):
                    best = (target, total)
            if best is None:
                continue
            mine = balancing.remaining(job, led.now)
            pending[name] = pending.get(name, 0.0) - mine
            pending[best[0].name] = pending.get(best[0].name, 0.0) + mine
            led.move(job, name, best[0].name)
            led.decided.add(job.name)
            pool[name].remove(job)
            moves.append((job.name, name, best[0].name))
            done.discard(name)
            break
    return moves


@settings(max_examples=300, deadline=None)
@given(snap=clusters())
def test_balancer_decides_what_the_reference_decides(snap: snapshot.Snapshot) -> None:
    fast = [(m.job, m.source, m.target) for m in balancing.balance_into(ledger.Ledger(snap))]
    assert fast == reference_balance(ledger.Ledger(snap))


@settings(max_examples=150, deadline=None)
@given(snap=clusters(), data=st.data())
def test_worth_is_the_sum_of_its_parts(snap: snapshot.Snapshot, data: st.DataObject) -> None:
    led = ledger.Ledger(snap)
    running = led.in_state(RUNNING)
    if not running:
        return
    job = data.draw(st.sampled_from(running))
    assert job.node is not None
    pending = balancing._pool(led)[1]
    for target in snap.nodes:
        expected = reference_worth(led, job, led.nodes[job.node], target, pending)
        assert balancing.worth(led, job, led.nodes[job.node], target, pending) == expected


@settings(max_examples=200, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.booleans(), st.sampled_from([None, 10, 50, 60]), st.integers(-5, 5), st.integers(0, 3)),
        max_size=40,
    ),
    default=st.sampled_from([10, 50, 70]),
)
def test_queue_entries_pop_in_key_order(jobs: list[tuple[bool, int | None, int, int]], default: int) -> None:
    views = [
        snapshot.JobView(name=f"q{i}", run_now=run, priority=pri, position=pos, submitted=sub)
        for i, (run, pri, pos, sub) in enumerate(jobs)
    ]
    heap = queue.entries(views, default)
    heapq.heapify(heap)
    popped = [heapq.heappop(heap)[-1] for _ in range(len(heap))]
    assert popped == sorted(views, key=lambda j: queue.key(j, default))


def reference_why_not(led: ledger.Ledger, job: snapshot.JobView) -> decisions.WaitReason:
    if job.placement is snapshot.PlacementKind.NODE:
        node = placement.resolve(led, job.node_ref) if job.node_ref is not None else None
        candidates = [] if node is None else [node]
    elif job.placement is snapshot.PlacementKind.RANGE:
        numbers = {n for first, last in job.ranges for n in range(first, last + 1)}
        candidates = [led.by_number[n] for n in sorted(numbers) if n in led.by_number]
    else:
        candidates = list(led.snapshot.nodes)
    allowed = [n for n in candidates if placement.allowed(led, n, job)]
    if not allowed:
        return decisions.WaitReason.NO_NODE
    if not any(placement.fits(led, n, job, slot=False) for n in allowed):
        return decisions.WaitReason.NO_MEMORY
    return decisions.WaitReason.NO_SLOTS


@settings(max_examples=200, deadline=None)
@given(snap=clusters(), data=st.data())
def test_why_not_matches_the_reference(snap: snapshot.Snapshot, data: st.DataObject) -> None:
    led = ledger.Ledger(snap)
    job = snapshot.JobView(
        name="w",
        placement=data.draw(st.sampled_from(list(snapshot.PlacementKind))),
        node_ref=data.draw(st.sampled_from(["1", "2", "n3", "10.0.0.4", "99"])),
        ranges=((data.draw(st.integers(1, 5)), data.draw(st.integers(3, 20))),),
        memory_mb=data.draw(st.sampled_from([0, 1000, 5000, 20000])),
        grid_class=data.draw(st.sampled_from([0, 1])),
        home=data.draw(st.sampled_from(["n1", "n2", None])),
    )
    assert queue._why_not(led, job) == reference_why_not(led, job)


@settings(max_examples=300, deadline=None)
@given(snap=clusters())
def test_a_hopeless_job_has_no_target_worth_it(snap: snapshot.Snapshot) -> None:
    """The balancer skips weighing a job's targets when their least quantities bound every move
    under the cost: then the reference finds none of them worth it either."""
    led = ledger.Ledger(snap)
    pending = balancing._pool(led)[1]
    for job in led.in_state(RUNNING):
        if job.node not in led.up:
            continue
        source = led.nodes[job.node]
        nodes = placement.candidates(led, job, slot=False, limit=balancing._CANDIDATES + 1)
        targets = balancing._targets([balancing._arriving(led, n, job.cpu_demand, pending) for n in nodes])
        if balancing._Leaving(led, job, source, pending).hopeless(targets):
            assert all(reference_worth(led, job, source, n, pending) is None for n in nodes if n.name != source.name)


def test_a_crowded_fast_node_makes_a_young_job_hopeless() -> None:
    """The case the bound is for: every fast node is full of older jobs, so sharing one costs them
    more than the mover gains; the job's targets are not weighed, and none would be worth it."""
    fast = [snapshot.NodeView(name=f"f{i}", number=i, cpus=2, speed=3.0, load=2.0, memory_free_mb=8000)
            for i in (1, 2)]
    slow = snapshot.NodeView(name="s3", number=3, cpus=1, speed=1.0, load=1.0, memory_free_mb=8000)
    jobs = [snapshot.JobView(name=f"old{i}", state=RUNNING, node=n.name, home=n.name, started_at=NOW - 3000.0)
            for n in fast for i in range(2)]
    young = snapshot.JobView(name="young", state=RUNNING, node="s3", home="s3", started_at=NOW - 20.0)
    snap = snapshot.Snapshot((*fast, slow), (*jobs, young), snapshot.ClusterView(hysteresis_s=0.0), NOW)
    led = ledger.Ledger(snap)
    pending = balancing._pool(led)[1]
    nodes = placement.candidates(led, young, slot=False, limit=balancing._CANDIDATES + 1)
    targets = balancing._targets([balancing._arriving(led, n, 1.0, pending) for n in nodes])
    assert balancing._Leaving(led, young, slow, pending).hopeless(targets)
    assert all(reference_worth(led, young, slow, n, pending) is None for n in fast)
    assert balancing.balance_into(ledger.Ledger(snap)) == []


@st.composite
def crowded(draw: st.DrawFn) -> snapshot.Snapshot:
    """Fast nodes full of jobs, slow nodes running several jobs each: the steady state of a busy
    cluster, where most sources' jobs are hopeless and the later of two jobs of a source is
    judged by the first's bound."""
    nodes, jobs = [], []
    for i in range(1, draw(st.integers(3, 8)) + 1):
        fast = draw(st.booleans())
        cpus = draw(st.sampled_from([1, 2, 4]))
        nodes.append(snapshot.NodeView(name=f"n{i}", number=i, cpus=cpus, speed=3.0 if fast else 1.0,
                                       memory_free_mb=8000))
        for k in range(cpus + draw(st.integers(0, 2))):
            jobs.append(snapshot.JobView(
                name=f"j{i}-{k}", state=RUNNING, node=f"n{i}", home=f"n{i}",
                started_at=NOW - draw(st.sampled_from([5.0, 40.0, 300.0, 3000.0])),
                memory_mb=draw(st.sampled_from([0, 0, 500])),
                expected_remaining_s=draw(st.sampled_from([None, None, None, 20.0, -1.0])),
                last_migration=draw(st.sampled_from([None, None, NOW - 5.0]))))
    load: dict[str, float] = {}
    for job in jobs:
        assert job.node is not None
        load[job.node] = load.get(job.node, 0.0) + job.cpu_demand
    nodes = [dataclasses.replace(n, load=load.get(n.name, 0.0)) for n in nodes]
    cluster = snapshot.ClusterView(migration_cost_s=draw(st.sampled_from([1.0, 5.0, 60.0])),
                                   min_gain=draw(st.sampled_from([0.0, 0.2])))
    return snapshot.Snapshot(tuple(nodes), tuple(jobs), cluster, NOW)


@settings(max_examples=300, deadline=None)
@given(snap=crowded())
def test_on_a_crowded_cluster_the_balancer_decides_what_the_reference_decides(snap: snapshot.Snapshot) -> None:
    fast = [(m.job, m.source, m.target) for m in balancing.balance_into(ledger.Ledger(snap))]
    assert fast == reference_balance(ledger.Ledger(snap))
