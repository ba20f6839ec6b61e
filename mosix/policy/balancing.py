"""Load balancing and memory ushering: which running jobs should move, and where.

A move must pay for itself: the mover must run more than `min_gain` faster on the target
(counting itself there), and the seconds saved over every job the move touches (the mover,
those it leaves, minus those it joins; each job's expected remaining time is its age, as
MOSIX assumes, unless a hint is given) must exceed the migration's cost. Each move strictly
lowers that total, so a round cannot undo itself, and a job that moved stays put for
`hysteresis_s`, so nothing ping-pongs across rounds. Each process of a gang (-P) or commands file
(-S) is weighed and moved on its own, as MOSIX moves each of its processes. An I/O-bound job at home stays there:
`mosix.policy.homing` would only bring it back.
"""

from __future__ import annotations

import collections.abc
import heapq
import itertools
import math
from typing import NamedTuple

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
    return _Leaving(led, job, source, pending).worth(target)


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


class _Arriving(NamedTuple):
    """A target as every move into it sees it, until the next move changes a load: the
    unit time there with a process of `demand` added (`after`) and without it (`joined`),
    the expected remaining seconds of its jobs (`work`), and what `drain` needs of it."""

    node: snapshot.NodeView
    after: float
    joined: float
    work: float
    unit: float  # unit time of one process alone there
    cpus: int


def _arriving(led: ledger.Ledger, node: snapshot.NodeView, demand: float,
              pending: dict[str, float]) -> _Arriving:
    load = led.load[node.name]
    return _Arriving(node, ledger.unit_time(node, load + demand), ledger.unit_time(node, load),
                     pending.get(node.name, 0.0), ledger.unit_time(node, 1.0), max(node.cpus, 1))


_Parts = tuple[float, float, float, float, float, float, float, float]
"""What `_Leaving` weighs with, of one job and its source: (before, mine, freed, ref, s_before, s_after, cost,
left), `left` being the source's unit time without the job."""


def _parts(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
           pending: dict[str, float]) -> _Parts:
    """The job's and its source's side of `gain`, `saved` and `levelled`, with `ledger.unit_time`,
    `remaining` and `cost` inlined, to the last bit: hundreds of jobs a round."""
    demand = job.cpu_demand
    load = max(led.load[source.name], demand)
    cpus = max(source.cpus, 1)
    speed = source.speed if source.speed > 0 else 1.0
    before = max(1.0, load / cpus) / speed
    hint, started = job.expected_remaining_s, job.started_at
    mine = hint if hint is not None else 0.0 if started is None else max(0.0, led.now - started)
    left = max(1.0, max(load - demand, 0.0) / cpus) / speed
    work = pending.get(source.name, 0.0)
    rest = max(work - mine, 0.0)
    freed = rest * (1.0 - left / before)  # what those left behind save
    ref = max(1.0, 1.0 / cpus) / speed
    s_before = work * ref / ref / cpus  # drain(source, work, source), to the last bit
    s_after = rest * ref / ref / cpus
    return before, mine, freed, ref, s_before, s_after, (
        led.cluster.migration_cost_s + job.memory_mb / led.cluster.migration_mb_per_s), left


def _hopeless(parts: _Parts, targets: _Targets) -> bool:
    """True when no target of `targets` can be `worth` it for the job of `parts`: an upper bound
    of both of `weigh`'s sums over them all, from their least quantities, stays under the cost.
    The saved time falls as the target's unit time and crowding grow; levelling saves at most
    what the source's drain time exceeds the target's, so both are bounded by the least of those.
    The bound holds a relative margin far above float rounding, so it never rules out a move
    `weigh` would take."""
    before, mine, freed, ref, s_before, s_after, cost_, _ = parts
    if mine < 0.0:  # a negative hint: the bound assumes time left is never negative
        return False
    saved = mine * (1.0 - targets.after / before) + freed - targets.crowding
    level = s_before - max(s_after, targets.drain / ref)
    margin = 1e-9 * (1.0 + mine + freed + targets.crowding + s_before)
    return max(saved, level, 0.0) + margin < cost_


class _Leaving:
    """One job leaving its source, weighed against several targets: `gain`, `saved` and
    `levelled` computed with everything that depends only on the job and its source worked
    out once (the balancer weighs a few targets per job, on every round)."""

    __slots__ = ("_cost", "_demand", "_freed", "_led", "_min_gain", "_mine", "_pending", "_ref", "_s_after",
                 "_s_before", "before")

    def __init__(self, led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
                 pending: dict[str, float], parts: _Parts | None = None) -> None:
        self._led, self._pending, self._demand = led, pending, job.cpu_demand
        self._min_gain = led.cluster.min_gain
        (self.before, self._mine, self._freed, self._ref, self._s_before, self._s_after,
         self._cost, _) = parts or _parts(led, job, source, pending)

    def worth(self, target: snapshot.NodeView) -> float | None:
        """As `worth`: the seconds saved by moving to `target` when above the cost, else None."""
        return self.weigh(_arriving(self._led, target, self._demand, self._pending))

    def hopeless(self, targets: _Targets) -> bool:
        """`_hopeless` for this job."""
        return _hopeless((self.before, self._mine, self._freed, self._ref, self._s_before, self._s_after,
                          self._cost, 0.0), targets)

    def weigh(self, to: _Arriving) -> float | None:
        """`worth` for a target whose side of the sums is already worked out."""
        after = to.after
        if self.before / after - 1.0 <= self._min_gain:  # gain
            return None
        total = self._mine * (1.0 - after / self.before) + self._freed - to.work * (after / to.joined - 1.0)
        ref = self._ref  # drain(target, work, source) below
        level = (max(self._s_before, to.work * to.unit / ref / to.cpus)
                 - max(self._s_after, (to.work + self._mine) * to.unit / ref / to.cpus))
        total = max(total, level)
        return total if total > self._cost else None


def _order(job: snapshot.JobView, now: float) -> tuple[float, str]:
    """Which job of a node moves first; criteria in order:

    1. expected remaining time, longest first (it gains the most);
    2. name (deterministic tie-break).
    """
    return (-remaining(job, now), job.name)


def _pool(led: ledger.Ledger, hold_io: bool = False) -> tuple[dict[str, list[snapshot.JobView]], dict[str, float]]:
    """The jobs the balancer may move (`movable`, undecided, on a live node; with `hold_io`, not
    I/O-bound jobs at home, which homing would only bring back) by node, in
    snapshot order (sorted by `_order` only for the nodes a round examines); and the expected
    remaining seconds of the jobs on each node (running or migrating).

    One pass over every running job, with `movable` and `remaining` inlined: it runs every round."""
    pool: dict[str, list[snapshot.JobView]] = {}
    pending: dict[str, float] = {}
    decided, now, hysteresis = led.decided, led.now, led.cluster.hysteresis_s
    up = led.up
    # A gang's or commands file's processes are units of their own (each on its node, with its own
    # hysteresis), in place of their job; a unit whose whole job was decided this round stays.
    units = _undecided(led, led.units[snapshot.JobState.RUNNING])
    for job in itertools.chain(led.in_state(snapshot.JobState.RUNNING), units):
        node = job.node
        if node is None or job.processes:
            continue
        hint, started = job.expected_remaining_s, job.started_at
        left = hint if hint is not None else 0.0 if started is None else max(0.0, now - started)
        pending[node] = pending.get(node, 0.0) + left
        if (node in up and job.migratable and not job.locked and job.parallel <= 1 and job.commands_max is None
                and (job.last_migration is None or now - job.last_migration >= hysteresis)
                and job.name not in decided
                and not (hold_io and node == job.home and io_bound(job, led.cluster))):
            pool.setdefault(node, []).append(job)
    for job in led.in_state(snapshot.JobState.MIGRATING):
        if job.node is not None:
            pending[job.node] = pending.get(job.node, 0.0) + remaining(job, now)
    return pool, pending


class _PoolOf(dict[str, list[snapshot.JobView]]):
    """`_pool` from the snapshot's index, one node at a time on first use (a round examines a few
    hundred nodes, not every running job): the movable jobs here, already in `_order`, and in `pending` the expected
    remaining seconds of the node's jobs, summed in `_pool`'s order (running jobs, then migrating
    ones, each in snapshot order), so to the same last bit."""

    def __init__(self, led: ledger.Ledger, hold_io: bool, pending: _PendingOf) -> None:
        super().__init__()
        self._led, self._hold_io, self._pending = led, hold_io, pending
        self._units = pending.units

    def __missing__(self, node: str) -> list[snapshot.JobView]:
        led = self._led
        assert led.index is not None
        decided, now, hysteresis, cluster = led.decided, led.now, led.cluster.hysteresis_s, led.cluster
        usable, hold_io = node in led.up, self._hold_io
        keyed: list[tuple[float, str, snapshot.JobView]] = []
        total = 0.0
        running = ((name, job, could) for _, name, job, could in led.index.entries_on(snapshot.JobState.RUNNING, node)
                   if not job.processes)  # a gang's or commands file's work is its processes', which follow
        units = ((u.name, u, u.migratable and not u.locked) for u in _undecided(led, self._units.get(node, ())))
        for name, job, could in itertools.chain(running, units):  # `_pool`'s loop
            hint, started = job.expected_remaining_s, job.started_at
            left = hint if hint is not None else 0.0 if started is None else max(0.0, now - started)
            total += left
            if (usable and could  # migratable, unlocked, one process: kept by the index
                    and (job.last_migration is None or now - job.last_migration >= hysteresis)
                    and name not in decided
                    and not (hold_io and node == job.home and io_bound(job, cluster))):
                keyed.append((-left, name, job))  # `_order`: names are unique, so jobs are never compared
        if node not in self._pending:
            for each in led.index.entries_on(snapshot.JobState.MIGRATING, node):
                total += remaining(each[2], now)
            self._pending[node] = total
        keyed.sort()
        jobs = self[node] = [job for _, _, job in keyed]
        return jobs

    def get(self, node: str, default: object = None) -> list[snapshot.JobView]:
        return self[node]


class _PendingOf(dict[str, float]):
    """`_pool`'s pending work from the snapshot's index, per node on first use (`_PoolOf`)."""

    def __init__(self, led: ledger.Ledger) -> None:
        super().__init__()
        self._led = led
        self.units: dict[str | None, list[snapshot.JobView]] = {}
        """The running processes of gangs and commands files (`_pool`'s units) by node, in snapshot order."""
        for u in led.units[snapshot.JobState.RUNNING]:
            self.units.setdefault(u.node, []).append(u)

    def __missing__(self, node: str) -> float:
        index, now = self._led.index, self._led.now
        assert index is not None
        total = 0.0
        for job in index.on(snapshot.JobState.RUNNING, node):
            if not job.processes:  # a gang's or commands file's work is its processes'
                total += remaining(job, now)
        for job in _undecided(self._led, self.units.get(node, ())):
            total += remaining(job, now)
        for job in index.on(snapshot.JobState.MIGRATING, node):
            total += remaining(job, now)
        self[node] = total
        return total

    def get(self, node: str, default: object = None) -> float:
        return self[node]


def _pools(led: ledger.Ledger, hold_io: bool = False,
           ) -> tuple[dict[str, list[snapshot.JobView]], dict[str, float], list[str], bool]:
    """`_pool`, the nodes that may have movable jobs, and whether each node's jobs come in `_order`
    already; from the index, each node's part on first use, ordered."""
    if led.index is None:
        pool, pending = _pool(led, hold_io)
        return pool, pending, list(pool), False
    up, pending = led.up, _PendingOf(led)
    nodes = dict.fromkeys(n for n in led.index.nodes_with(snapshot.JobState.RUNNING) if n in up)
    nodes.update(dict.fromkeys(n for n in pending.units if n in up))
    return _PoolOf(led, hold_io, pending), pending, [n for n in nodes if n is not None], True


def _undecided(led: ledger.Ledger, units: collections.abc.Iterable[snapshot.JobView]) -> list[snapshot.JobView]:
    """The units whose whole job this round has not decided (`_pool` leaves the others out)."""
    return [u for u in units if snapshot.split_unit(u.name)[0] not in led.decided]


def usher_into(led: ledger.Ledger) -> list[decisions.Migration]:
    """Move jobs off nodes whose free memory is under the reserve, biggest first."""
    reserve = led.cluster.memory_reserve_mb
    moves: list[decisions.Migration] = []
    if all(free >= reserve for free in led.free_mb.values()):
        return moves
    pool, _, names, _ = _pools(led)
    for name in sorted(names):
        if led.free_mb[name] >= reserve:
            continue  # nothing to do here (moves never take a target under the reserve)
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


Signature = tuple[float, int, int, str | None]


def _signature(led: ledger.Ledger, job: snapshot.JobView) -> Signature:
    """What makes two jobs' eligible targets differ: demand, memory, class, and home where
    it matters (grid nodes count guests by home; a dont_take home keeps its jobs)."""
    home = job.home if led.grid or led.keeps_its_jobs(job.home) else None
    return (job.cpu_demand, job.memory_mb, job.grid_class, home)


class _Targets(NamedTuple):
    """The ranked targets of one `_signature`, and the least of each target-side quantity among
    them, which bound what any move to one of them can save (`_Leaving.hopeless`)."""

    ranked: list[_Arriving]
    after: float  # least unit time there with the job added
    crowding: float  # least `work * (after / joined - 1)`: what the target's own jobs lose
    drain: float  # least `work * unit / cpus`: the target's drain time, before dividing by the source's unit


def _targets(ranked: list[_Arriving]) -> _Targets:
    if not ranked:
        return _Targets(ranked, math.inf, 0.0, 0.0)
    return _Targets(ranked, min(to.after for to in ranked),
                    min(to.work * (to.after / to.joined - 1.0) for to in ranked),
                    min(to.work * to.unit / to.cpus for to in ranked))


def _targets_of(led: ledger.Ledger, job: snapshot.JobView, key: Signature, pending: dict[str, float],
                cache: dict[Signature, _Targets]) -> _Targets:
    """The targets of `job`'s signature `key`, from `cache` (kept until a move changes a load)."""
    targets = cache.get(key)
    if targets is None:
        nodes = placement.candidates(led, job, slot=False, limit=_CANDIDATES + 1)
        targets = cache[key] = _targets([_arriving(led, node, job.cpu_demand, pending) for node in nodes])
    return targets


def _target(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView,
            pending: dict[str, float], cache: dict[Signature, _Targets], *,
            hopeless: set[Signature] | None = None) -> tuple[snapshot.NodeView, float] | None:
    """Among the best-ranked eligible nodes, the one saving the most seconds (ties: rank).

    The ranked candidates, and their side of `worth`'s sums, depend only on the job's
    `_signature` and on the loads, so they are cached until the next move changes a load.
    They come in rank order, which is the order of the job's time per unit of work there,
    so once one gains too little (`min_gain`) the rest gain less and are not weighed; and
    when even the best of every target-side quantity could not make a move pay, none is.

    `hopeless` holds the signatures found hopeless so far for jobs of this source with at least
    as much time left (its jobs are tried in `_order`): the bound only falls with the time left
    when the source, even without the job, is no faster than the best target (`left >= after`),
    so a later job of such a signature (time left not negative) is hopeless too.
    """
    key = _signature(led, job)
    if hopeless is not None and key in hopeless and (job.expected_remaining_s is None
                                                     or job.expected_remaining_s >= 0.0):
        return None
    targets = _targets_of(led, job, key, pending, cache)
    chosen: tuple[snapshot.NodeView, float] | None = None
    parts = _parts(led, job, source, pending)
    if _hopeless(parts, targets):
        if hopeless is not None and targets.after <= parts[7]:
            hopeless.add(key)
        return None
    leaving = _Leaving(led, job, source, pending, parts)
    for to in targets.ranked:
        if to.node.name == source.name:
            continue
        if leaving.before / to.after - 1.0 <= led.cluster.min_gain:  # `gain`: the rest gain less
            break
        total = leaving.weigh(to)
        if total is not None and (chosen is None or total > chosen[1]):
            chosen = (to.node, total)
    return chosen


class Settled(NamedTuple):
    """A source node's jobs as `_hopeless` weighs them, kept in the index between rounds while the node's
    jobs stay the same: every job on it has no hint and started by `now`, so each one's time left, and the
    node's pending work, grow exactly with the clock, and a later round weighs the node's movable jobs
    without walking them (`_still_settled`, with the node's load and speed of that round). Only for a round
    without grid nodes or dont_take homes, where a job's signature is its demand, memory and class alone."""

    changes: int  # `index.JobIndex.changes` then: another count, other jobs
    now: float
    work: float  # the node's pending work at `now`
    growing: int  # jobs in `work`, each one second more per second
    wakes: float  # the earliest last migration of a job hysteresis kept out of the pool (inf: none)
    groups: tuple[tuple[Signature, snapshot.JobView, float, float], ...]
    """Per signature of the movable jobs: one of them, the least and the most time left among them."""


def _settle(led: ledger.Ledger, name: str) -> Settled | None:
    """`Settled` of node `name` now (untouched this round and up, with no gang processes on it), or None
    when some job on it has a hint or a start time not yet past. `_PoolOf`'s filter, with `hold_io`."""
    index, now, cluster = led.index, led.now, led.cluster
    assert index is not None
    work, count, wakes = 0.0, 0, math.inf
    groups: dict[Signature, tuple[snapshot.JobView, float, float]] = {}
    for state in (snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING):
        for _, _, job, could in index.entries_on(state, name):
            if job.processes and state is snapshot.JobState.RUNNING:
                continue  # its work is its processes' (there are none here)
            started = job.started_at
            if job.expected_remaining_s is not None or started is None or started > now:
                return None
            mine = now - started
            work += mine
            count += 1
            if state is not snapshot.JobState.RUNNING or not could or (name == job.home and io_bound(job, cluster)):
                continue
            if job.last_migration is not None and now - job.last_migration < cluster.hysteresis_s:
                wakes = min(wakes, job.last_migration)
                continue
            key = _signature(led, job)
            first, low, high = groups.get(key, (job, mine, mine))
            groups[key] = (first, min(low, mine), max(high, mine))
    return Settled(index.changes(name), now, work, count, wakes,
                   tuple((key, *group) for key, group in groups.items()))


def _settled(led: ledger.Ledger, name: str, kept: dict[str, Settled]) -> Settled | None:
    """Node `name`'s `Settled`, the kept one while it holds (same jobs, clock not back, no job out of
    hysteresis since), else made afresh."""
    index = led.index
    assert index is not None
    was = kept.get(name)
    if (was is not None and was.changes == index.changes(name)
            and led.now >= was.now and not led.now - was.wakes >= led.cluster.hysteresis_s):
        return was
    now = _settle(led, name)
    if now is None:
        kept.pop(name, None)
    else:
        kept[name] = now
    return now


def _still_settled(led: ledger.Ledger, node: snapshot.NodeView, settled: Settled, pending: dict[str, float],
                   cache: dict[Signature, _Targets]) -> bool:
    """Is every movable job of the node `_hopeless` against the targets now? `_parts` and `_hopeless` spelled
    out for a job with `mine` seconds left (hundreds of nodes a round): the bound is linear in it, and
    levelling grows with it, so the least and the most of each signature stand for all. The margin is four
    times `_hopeless`'s: the pending work here is the kept sum moved on by the clock, not summed afresh."""
    step = led.now - settled.now
    work = settled.work + settled.growing * step
    cluster = led.cluster
    cpus = max(node.cpus, 1)
    speed = node.speed if node.speed > 0 else 1.0
    ref = max(1.0, 1.0 / cpus) / speed
    s_before = work / cpus
    here = led.load[node.name]
    for key, job, low, high in settled.groups:
        targets = cache.get(key) or _targets_of(led, job, key, pending, cache)
        if not targets.ranked:
            continue  # nowhere to go
        demand = job.cpu_demand
        load = max(here, demand)
        before = max(1.0, load / cpus) / speed
        keeps = 1.0 - max(1.0, max(load - demand, 0.0) / cpus) / speed / before  # what those left save, per second
        gains = 1.0 - targets.after / before
        floor = targets.drain / ref
        cost_ = cluster.migration_cost_s + job.memory_mb / cluster.migration_mb_per_s
        for mine in (low + step, high + step):
            rest = max(work - mine, 0.0)
            freed = rest * keeps
            bound = max(mine * gains + freed - targets.crowding, s_before - max(rest / cpus, floor), 0.0)
            if bound + 4e-9 * (1.0 + mine + freed + targets.crowding + s_before) >= cost_:
                return False
    return True


_CANDIDATES = 4  # targets weighed per job: the best-ranked few hold the best move
_TRIES = 2  # jobs tried per source: later ones expect less remaining time, so gain less


def balance_into(led: ledger.Ledger) -> list[decisions.Migration]:
    """Greedy: take the node whose processes run slowest, move its first candidate
    (`_order`) where that saves the most time, and repeat while some move is worth it.
    A node none of whose first candidates can move is done for the round; at most
    `ClusterView.balance_sources` nodes are examined per round; the rest are examined in
    later rounds if they are still the slowest.

    The nodes wait in a heap keyed by their unit time; a move re-keys both of its ends (a
    target that became the slowest is examined next), and superseded entries are dropped."""
    moves: list[decisions.Migration] = []
    pool, pending, names, presorted = _pools(led, hold_io=True)

    def entry(name: str) -> tuple[float, str, int]:
        return (-ledger.unit_time(led.nodes[name], led.load[name]), name, led.version[name])

    ranked: list[tuple[float, str, int]] = []
    if led.index is not None and led.index.tables().distinct:
        # every node's entry as the index keeps them, sorted: read in order beside the heap of the nodes
        # this round changed (and re-keys); nodes with nothing movable are passed over when taken
        ranked = led.index.tables().slowest
        sources = [entry(name) for name in led.touched()]
        heapq.heapify(sources)
    else:
        nodes, load, versions = led.nodes, led.load, led.version
        sources = [(-(max(1.0, load[n] / max(node.cpus, 1)) / (node.speed if node.speed > 0 else 1.0)), n,
                    versions[n]) for n in names for node in (nodes[n],)]  # `entry`, inlined: every node, every round
        heapq.heapify(sources)
    cache: dict[Signature, _Targets] = {}
    ordered: set[str] = set()
    done: set[str] = set()
    budget = led.cluster.balance_sources
    kept: dict[str, Settled] | None = None  # sources summed up in earlier rounds (`Settled`)
    if (led.index is not None and led.index.tables().distinct and not led.grid
            and not any(n.dont_take for n in led.snapshot.nodes)):
        kept = led.index.settled(led.cluster)
        gangs = {u.node for u in led.units[snapshot.JobState.RUNNING]}
    at = 0
    while (sources or at < len(ranked)) and budget > 0:
        if at < len(ranked) and (not sources or ranked[at] < sources[0]):  # the next of both, as one heap
            _, name, version = ranked[at]
            at += 1
        else:
            _, name, version = heapq.heappop(sources)
        if version != led.version[name] or name in done:
            continue  # superseded: a move re-keyed this node
        if kept is not None and version == 0 and name in led.up and name not in gangs:
            settled = _settled(led, name, kept)  # untouched this round: its jobs are the pool's
            if settled is not None and not settled.groups:
                continue  # nothing movable there
            if settled is not None and _still_settled(led, led.nodes[name], settled, pending, cache):
                budget -= 1  # examined: no job of it can move
                done.add(name)
                continue
        if not pool[name]:
            continue  # nothing movable there
        source = led.nodes[name]
        budget -= 1
        if name not in ordered and not presorted:
            pool[name].sort(key=lambda j: _order(j, led.now))
            ordered.add(name)
        done.add(name)
        hopeless: set[Signature] = set()
        for job in pool[name][:_TRIES]:
            found = _target(led, job, source, pending, cache, hopeless=hopeless)
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
            done.discard(name)
            for end in (name, target.name):
                if pool.get(end) and end not in done:
                    heapq.heappush(sources, entry(end))
            break
    return moves


def balance(snap: snapshot.Snapshot) -> list[decisions.Migration]:
    """Memory ushering, then load balancing, on `snap` (without homing: see `mosix.policy.decide`)."""
    led = ledger.Ledger(snap)
    return usher_into(led) + balance_into(led)
