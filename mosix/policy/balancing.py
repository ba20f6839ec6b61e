"""Load balancing and memory ushering: which running jobs should move, and where.

A move must pay for itself: the mover must run more than `min_gain` faster on the target
(counting itself there), and the seconds saved over every job the move touches (the mover,
those it leaves, minus those it joins; each job's expected remaining time is its age, as
MOSIX assumes, unless a hint is given) must exceed the migration's cost. Each move strictly
lowers that total, so a round cannot undo itself, and a job that moved stays put for
`hysteresis_s`, so nothing ping-pongs across rounds. An I/O-bound job at home stays there:
`mosix.policy.homing` would only bring it back.
"""

from __future__ import annotations

import heapq

from mosix.policy import decisions, ledger, placement, snapshot


def movable(job: snapshot.JobView, now: float, cluster: snapshot.ClusterView) -> bool:
    """May the balancer move `job` now? Running, migratable, unlocked, single, settled."""
    if job.state is not snapshot.JobState.RUNNING or job.node is None:
        return False
    if not job.migratable or job.locked or job.parallel > 1 or job.commands_max is not None:
        return False
    return job.last_migration is None or now - job.last_migration >= cluster.hysteresis_s


def io_bound(job: snapshot.JobView, cluster: snapshot.ClusterView) -> bool:
    """Does `job` do enough I/O to belong at home? Never with -c (`stay_on_syscalls`)."""
    return not job.stay_on_syscalls and job.io_rate_kbps >= cluster.io_home_kbps


def remaining(job: snapshot.JobView, now: float) -> float:
    """Expected seconds left: the hint, else the job's age (old jobs tend to run long)."""
    if job.expected_remaining_s is not None:
        return job.expected_remaining_s
    return 0.0 if job.started_at is None else max(0.0, now - job.started_at)


def cost(job: snapshot.JobView, cluster: snapshot.ClusterView) -> float:
    """Seconds a migration of `job` costs: a fixed part plus its memory over the link."""
    return cluster.migration_cost_s + job.memory_mb / cluster.migration_mb_per_s


def gain(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
         target: snapshot.NodeView) -> float:
    """How much faster `job` would run on `target` (with it added): 0.5 is 50% faster."""
    now_unit = placement.unit_time(source, max(led.load[source.name], job.cpu_demand))
    then_unit = placement.unit_time(target, led.load[target.name] + job.cpu_demand)
    return now_unit / then_unit - 1.0


def saved(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
          target: snapshot.NodeView, pending: dict[str, float]) -> float:
    """Seconds the move saves, summed over every job it touches: the mover's gain, the
    speed-up of those it leaves behind, minus the slow-down of those it joins.

    `pending` is the expected remaining seconds of the jobs on each node. Counting the
    others is what keeps a fast node from being crowded while a slower one goes idle.
    """
    demand = job.cpu_demand
    load_source = max(led.load[source.name], demand)
    load_target = led.load[target.name]
    before = placement.unit_time(source, load_source)
    after = placement.unit_time(target, load_target + demand)
    mine = remaining(job, led.now)
    total = mine * (1.0 - after / before)
    left = placement.unit_time(source, max(load_source - demand, 0.0))
    total += max(pending.get(source.name, 0.0) - mine, 0.0) * (1.0 - left / before)
    joined = placement.unit_time(target, load_target)
    total -= pending.get(target.name, 0.0) * (after / joined - 1.0)
    return total


def worth(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
          target: snapshot.NodeView, pending: dict[str, float]) -> float | None:
    """The seconds a move saves when it is worth making, else None: the mover must gain more
    than `min_gain`, and the time saved overall must exceed the migration's cost."""
    if gain(led, job, source, target) <= led.cluster.min_gain:
        return None
    total = max(saved(led, job, source, target, pending), levelled(job, source, target, pending, led.now))
    return total if total > cost(job, led.cluster) else None


def drain(node: snapshot.NodeView, work: float, reference: snapshot.NodeView) -> float:
    """Seconds for `node` to finish `work` (seconds of one process on `reference` alone) with every CPU busy."""
    return work * ledger.unit_time(node, 1.0) / ledger.unit_time(reference, 1.0) / max(node.cpus, 1)


def levelled(job: snapshot.JobView, source: snapshot.NodeView, target: snapshot.NodeView,
             pending: dict[str, float], now: float) -> float:
    """Seconds by which the move brings the later of the two nodes' finishing times forward.

    When both nodes are busy, moving a process shifts work without changing the sum of the
    completion times, yet the overloaded node's jobs still finish last: MOSIX levels the load, so
    the balancer counts what levelling saves. Moving back would make the later time later, so
    this never invites a ping-pong.
    """
    mine = remaining(job, now)
    work_s, work_t = pending.get(source.name, 0.0), pending.get(target.name, 0.0)
    before = max(drain(source, work_s, source), drain(target, work_t, source))
    after = max(drain(source, max(work_s - mine, 0.0), source), drain(target, work_t + mine, source))
    return before - after


def _order(job: snapshot.JobView, now: float) -> tuple[float, str]:
    """Which job of a node moves first; criteria in order:

    1. expected remaining time, longest first (it gains the most);
    2. name (deterministic tie-break).
    """
    return (-remaining(job, now), job.name)


def _pool(led: ledger.Ledger, hold_io: bool = False) -> dict[str, list[snapshot.JobView]]:
    """Movable jobs by node, in `_order`; with `hold_io`, without I/O-bound jobs at home
    (homing would only bring them back)."""
    pool: dict[str, list[snapshot.JobView]] = {}
    for job in led.in_state(snapshot.JobState.RUNNING):
        if hold_io and job.node == job.home and io_bound(job, led.cluster):
            continue
        if job.name not in led.decided and movable(job, led.now, led.cluster) and led.alive(job.node):
            assert job.node is not None
            pool.setdefault(job.node, []).append(job)
    for jobs in pool.values():
        jobs.sort(key=lambda j: _order(j, led.now))
    return pool


def usher_into(led: ledger.Ledger) -> list[decisions.Migration]:
    """Move jobs off nodes whose free memory is under the reserve, biggest first."""
    reserve = led.cluster.memory_reserve_mb
    moves: list[decisions.Migration] = []
    if all(free >= reserve for free in led.free_mb.values()):
        return moves
    pool = _pool(led)
    for name in sorted(pool):
        jobs = sorted((j for j in pool[name] if j.memory_mb > 0), key=lambda j: (-j.memory_mb, j.name))
        for job in jobs:
            if led.free_mb[name] >= reserve:
                break
            target = placement.best(led, job, slot=False, exclude=name, reserve_mb=reserve)
            if target is None:
                continue
            led.move(job, name, target.name)
            led.decided.add(job.name)
            moves.append(decisions.Migration(job.name, name, target.name, decisions.MigrationReason.MEMORY))
    return moves


def _pending(led: ledger.Ledger) -> dict[str, float]:
    pending: dict[str, float] = {}
    for job in led.in_state(snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING):
        if job.node is not None:
            pending[job.node] = pending.get(job.node, 0.0) + remaining(job, led.now)
    return pending


Signature = tuple[float, int, int, str | None]


def _signature(job: snapshot.JobView) -> Signature:
    """What makes two jobs' eligible targets differ: demand, memory, class and home."""
    return (job.cpu_demand, job.memory_mb, job.grid_class, job.home)


def _target(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
            pending: dict[str, float], cache: dict[Signature, list[snapshot.NodeView]],
            ) -> tuple[snapshot.NodeView, float] | None:
    """Among the best-ranked eligible nodes, the one saving the most seconds (ties: rank).

    The ranked candidates depend only on the job's `_signature` and on the loads, so they
    are cached until the next move changes a load.
    """
    key = _signature(job)
    ranked = cache.get(key)
    if ranked is None:
        ranked = placement.candidates(led, job, slot=False, limit=_CANDIDATES + 1)
        cache[key] = ranked
    chosen: tuple[snapshot.NodeView, float] | None = None
    for node in ranked:
        if node.name == source.name:
            continue
        total = worth(led, job, source, node, pending)
        if total is not None and (chosen is None or total > chosen[1]):
            chosen = (node, total)
    return chosen


_CANDIDATES = 4  # targets weighed per job: the best-ranked few hold the best move
_TRIES = 2  # jobs tried per source: later ones expect less remaining time, so gain less
_SOURCES = 256  # nodes examined per round, slowest first: bounds a round on a big cluster;
#                 the rest are examined in later rounds if they are still the slowest


def balance_into(led: ledger.Ledger) -> list[decisions.Migration]:
    """Greedy: take the node whose processes run slowest, move its first candidate
    (`_order`) where that saves the most time, and repeat while some move is worth it.
    A node none of whose first candidates can move is done for the round; at most
    `_SOURCES` nodes are examined per round."""
    moves: list[decisions.Migration] = []
    pool = _pool(led, hold_io=True)
    pending = _pending(led)

    def entry(name: str) -> tuple[float, str, int]:
        return (-placement.unit_time(led.nodes[name], led.load[name]), name, led.version[name])

    sources = [entry(name) for name in pool]
    heapq.heapify(sources)
    cache: dict[Signature, list[snapshot.NodeView]] = {}
    budget = _SOURCES
    while sources and budget > 0:
        _, name, version = heapq.heappop(sources)
        if version != led.version[name]:
            heapq.heappush(sources, entry(name))
            continue
        source = led.nodes[name]
        budget -= 1
        for job in pool[name][:_TRIES]:
            found = _target(led, job, source, pending, cache)
            if found is None:
                continue
            target = found[0]
            cache.clear()
            mine = remaining(job, led.now)
            pending[name] = pending.get(name, 0.0) - mine
            pending[target.name] = pending.get(target.name, 0.0) + mine
            led.move(job, name, target.name)
            led.decided.add(job.name)
            pool[name].remove(job)
            moves.append(decisions.Migration(job.name, name, target.name, decisions.MigrationReason.LOAD))
            if pool[name]:
                heapq.heappush(sources, entry(name))
            break
    return moves


def balance(snap: snapshot.Snapshot) -> list[decisions.Migration]:
    """Memory ushering, then load balancing, on `snap` (without homing: see `mosix.policy.decide`)."""
    led = ledger.Ledger(snap)
    return usher_into(led) + balance_into(led)
