"""The cluster queue with MOSIX semantics (mosrun -q, mosq).

One queue for the whole cluster: lower priority numbers first, then first come, first
served. mosq advance/retard rewrite a job's position within its priority group; mosq run
lets it bypass the order. Gangs (-P n) leave only when n slots are free at once.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from mosix.policy import decisions, ledger, placement, snapshot


class QueueError(ValueError):
    """A queue operation that cannot be done (unknown job, not waiting, bad priority)."""


def key(job: snapshot.JobView, default_priority: int) -> tuple[bool, int, int, int, str]:
    """The queue order, first out first; criteria in order:

    1. run now (mosq run) before everything else;
    2. priority, lower first (unset: the cluster default);
    3. position, lower first (submission time unless advanced or retarded);
    4. submission order;
    5. name (deterministic tie-break).
    """
    priority = default_priority if job.priority is None else job.priority  # effective_priority, inlined
    return (not job.run_now, priority, job.position, job.submitted, job.name)


def entries(jobs: Iterable[snapshot.JobView], default_priority: int,
            ) -> list[tuple[bool, int, int, int, str, snapshot.JobView]]:
    """`key(job) + (job,)` for each job, built inline: a round heapifies every waiting job,
    and a flat tuple made without a call per job is several times cheaper. The key ends in
    the unique name, so two entries never compare their jobs."""
    return [(not j.run_now, default_priority if j.priority is None else j.priority, j.position, j.submitted,
             j.name, j) for j in jobs]


def waiting(jobs: Iterable[snapshot.JobView]) -> list[snapshot.JobView]:
    """The jobs still waiting in the queue, unordered."""
    return [j for j in jobs if j.state is snapshot.JobState.QUEUED]


def order(jobs: Iterable[snapshot.JobView], default_priority: int = snapshot.DEFAULT_PRIORITY,
          ) -> list[snapshot.JobView]:
    """The waiting jobs in queue order (mosq list)."""
    return sorted(waiting(jobs), key=lambda j: key(j, default_priority))


def _find(jobs: Sequence[snapshot.JobView], name: str) -> snapshot.JobView:
    for job in jobs:
        if job.name == name:
            if job.state is not snapshot.JobState.QUEUED:
                raise QueueError(f"job {name} is not waiting in the queue")
            return job
    raise QueueError(f"no job {name} in the queue")


def _group(jobs: Sequence[snapshot.JobView], job: snapshot.JobView, default_priority: int) -> list[int]:
    pri = job.effective_priority(default_priority)
    return [j.position for j in waiting(jobs)
            if j.name != job.name and j.effective_priority(default_priority) == pri]


def advance(jobs: Sequence[snapshot.JobView], name: str,
            default_priority: int = snapshot.DEFAULT_PRIORITY) -> int:
    """mosq advance: the position that puts job `name` at the head of its priority group."""
    job = _find(jobs, name)
    others = _group(jobs, job, default_priority)
    return job.position if not others else min(job.position, min(others) - 1)


def retard(jobs: Sequence[snapshot.JobView], name: str,
           default_priority: int = snapshot.DEFAULT_PRIORITY) -> int:
    """mosq retard: the position that puts job `name` at the end of its priority group."""
    job = _find(jobs, name)
    others = _group(jobs, job, default_priority)
    return job.position if not others else max(job.position, max(others) + 1)


def cngpri(job: snapshot.JobView, priority: int) -> snapshot.JobView:
    """mosq cngpri: the waiting job with a new priority; it keeps its place in time."""
    if job.state is not snapshot.JobState.QUEUED:
        raise QueueError(f"job {job.name} is not waiting in the queue")
    if not 0 <= priority <= snapshot.MAX_PRIORITY:
        raise QueueError(f"priority {priority} is outside 0..{snapshot.MAX_PRIORITY}")
    return dataclasses.replace(job, priority=priority)


def run(job: snapshot.JobView) -> snapshot.JobView:
    """mosq run: the waiting job, released at the next round whatever the order and load."""
    if job.state is not snapshot.JobState.QUEUED:
        raise QueueError(f"job {job.name} is not waiting in the queue")
    return dataclasses.replace(job, run_now=True)


def delete(jobs: Sequence[snapshot.JobView], name: str) -> tuple[snapshot.JobView, ...]:
    """mosq delete: the jobs without waiting job `name`."""
    _find(jobs, name)
    return tuple(j for j in jobs if j.name != name)


def processes(job: snapshot.JobView) -> int:
    """How many processes the job would start now: a gang's n, a -S file's next lines, or 1."""
    if job.commands_max is not None:
        return max(0, min(job.commands_max - job.commands_running, job.commands_total - job.commands_started))
    return max(job.parallel, 1)


def _occupies_queue_slot(job: snapshot.JobView) -> bool:
    active = (snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING, snapshot.JobState.PENDING)
    return job.queued and job.state in active and job.node is not None


def _candidates(led: ledger.Ledger, job: snapshot.JobView) -> list[snapshot.NodeView]:
    """The nodes `job` may be placed on by its placement alone: its node (-r), its range's (-j), or all."""
    if job.placement is snapshot.PlacementKind.NODE:
        node = placement.resolve(led, job.node_ref) if job.node_ref is not None else None
        return [] if node is None else [node]
    if job.placement is snapshot.PlacementKind.RANGE:
        numbers = {n for first, last in job.ranges for n in range(first, last + 1)}
        return [led.by_number[n] for n in sorted(numbers) if n in led.by_number]
    return list(led.snapshot.nodes)


def _why_not(led: ledger.Ledger, job: snapshot.JobView) -> decisions.WaitReason:
    """Why `job` found no node: none it may use, none with its memory free, or no free CPU.
    Stops at the first node that is allowed and fits (then only CPUs were missing)."""
    reason = decisions.WaitReason.NO_NODE
    for n in _candidates(led, job):
        if placement.allowed(led, n, job):
            if placement.fits(led, n, job, slot=False):
                return decisions.WaitReason.NO_SLOTS
            reason = decisions.WaitReason.NO_MEMORY
    return reason


Seen = tuple[str, tuple[object, ...], float, int, int]
"""A node as a placement saw it: (name, what `placement.allowed` and `fits` read of its view, and the
round's load, free memory and guests there)."""

_MEMO_NODES = 64  # a job of more candidate nodes is checked every round: its memo would cost as much


class Unplaced(NamedTuple):
    """A waiting job of one process on named nodes (-r, -j) that found none of them eligible, with what it
    saw of them (`Seen`), kept in the index between rounds (`index.JobIndex.unplaced`). A later round that
    finds the same job and those nodes no better (`_still_unplaced`) passes it over with the same reason
    instead of checking it again: nodes busier, memory and guests as they were, nothing else changed."""

    job: snapshot.JobView
    reason: decisions.WaitReason
    epoch: int  # `index.Tables.epoch`: the same nodes by name, number and address
    home_keeps: bool | None  # its home node's dont_take (None: no such node)
    nodes: tuple[Seen, ...]


def _static(n: snapshot.NodeView) -> tuple[object, ...]:
    return (n.alive, n.block, n.expel, n.accept, n.dontgo, n.local, n.outsider, n.guests_max, n.cpus)


def _home_keeps(led: ledger.Ledger, job: snapshot.JobView) -> bool | None:
    home = led.nodes.get(job.home) if job.home is not None else None
    return None if home is None else home.dont_take


def _memo(led: ledger.Ledger, job: snapshot.JobView, reason: decisions.WaitReason) -> Unplaced | None:
    """What `job`, just found unplaceable for `reason`, saw of its nodes; None for a job not kept so."""
    assert led.index is not None
    nodes = _candidates(led, job)
    if len(nodes) > _MEMO_NODES:
        return None
    load, free, guests = led.load, led.free_mb, led.guests
    return Unplaced(job, reason, led.index.tables().epoch, _home_keeps(led, job),
                    tuple((n.name, _static(n), load[n.name], free[n.name], guests[n.name]) for n in nodes))


def _still_unplaced(led: ledger.Ledger, memo: Unplaced) -> bool:
    """Is `memo`'s job, unchanged, still unplaceable for the same reason? Yes when the nodes are the same
    (`epoch`) and none of its nodes is better than it saw: the same view but for load, memory and guests,
    load no lower (float sums are monotonic: no slot then, none now), free memory and guests the same (so
    the same nodes are allowed and fit its memory: the same reason), and its home's dont_take the same."""
    assert led.index is not None
    if memo.epoch != led.index.tables().epoch or _home_keeps(led, memo.job) != memo.home_keeps:
        return False
    nodes, load, free, guests = led.nodes, led.load, led.free_mb, led.guests
    for name, static, then, free_then, guests_then in memo.nodes:
        if (load[name] < then or free[name] != free_then or guests[name] != guests_then
                or _static(nodes[name]) != static):
            return False
    return True


def _kept(led: ledger.Ledger, memos: dict[str, Unplaced], job: snapshot.JobView) -> decisions.WaitReason | None:
    """Why `job` waits, as a kept memo says while it holds (`_still_unplaced`); None: check it."""
    memo = memos.get(job.name)
    return memo.reason if memo is not None and memo.job is job and _still_unplaced(led, memo) else None


def _remember(led: ledger.Ledger, memos: dict[str, Unplaced], job: snapshot.JobView,
              reason: decisions.WaitReason | None) -> None:
    """Keeps `job`'s memo when it waits for `reason` (None: it started)."""
    memo = None if reason is None else _memo(led, job, reason)
    if memo is None:
        memos.pop(job.name, None)
    else:
        memos[job.name] = memo


def _memorable(job: snapshot.JobView) -> bool:
    """A waiting job of one process placed on named nodes: the jobs `Unplaced` keeps."""
    return (job.parallel <= 1 and job.commands_max is None and job.state is snapshot.JobState.QUEUED
            and job.placement in (snapshot.PlacementKind.NODE, snapshot.PlacementKind.RANGE))


def _take(led: ledger.Ledger, job: snapshot.JobView, count: int, *, slot: bool) -> tuple[str, ...]:
    """Nodes for up to `count` processes of `job`, kept in the ledger.

    A -S file's lines are independent, so as many as fit are taken; any other job gets all
    `count` or nothing (a gang is never partly placed). A gang's processes go to the best
    nodes unless it names its nodes, like MOSIX's MPI support (-P with -b).
    """
    taken: list[str] = []
    one = job if job.parallel == 1 else dataclasses.replace(job, parallel=1)
    if job.parallel > 1 and job.placement is snapshot.PlacementKind.HOME:
        one = dataclasses.replace(one, placement=snapshot.PlacementKind.BEST)  # a gang spreads, as -P -b
    for _ in range(count):
        node = placement.choose(led, one, slot=slot)
        if node is None:
            if job.commands_max is not None:
                break
            for name in taken:
                led.remove(one, name)
            return ()
        led.add(one, node.name)
        taken.append(node.name)
    return tuple(taken)


def _in_order(led: ledger.Ledger, lines: list[snapshot.JobView], *, full: bool) -> Iterator[snapshot.JobView]:
    """The waiting jobs not decided yet and the queued -S files in `lines`, in `key` order, as far
    as the caller reads; on a `full` cluster only mosq run jobs (nothing else can start).

    From the snapshot's index the queue is already sorted: it is read from its head, merged
    with the few -S files. Without one, every waiting job goes into a heap, popped only as far
    as the slots go (cheaper than a full sort)."""
    decided, default = led.decided, led.cluster.default_priority
    index = led.index
    if index is None:
        waiting_ = (j for j in led.in_state(snapshot.JobState.QUEUED) if j.queued and j.name not in decided)
        queue: Iterable[snapshot.JobView] = itertools.chain(waiting_, lines)
        if full:
            queue = [j for j in queue if j.run_now and j.state is snapshot.JobState.QUEUED]
        heap = entries(queue, default)  # keys end in the unique name
        heapq.heapify(heap)
        while heap:
            yield heapq.heappop(heap)[-1]
        return
    if full:
        for first in index.queue():
            if first[0]:  # past the mosq run jobs
                return
            if first[4] not in decided:
                yield index.job(first[4])
        return
    files = {j.name: j for j in lines}
    merged = heapq.merge(index.queue(), sorted(key(j, default) for j in lines)) if files else index.queue()
    for each in merged:
        name = each[4]
        job = files.get(name)
        if job is not None:
            yield job
        elif name not in decided:
            yield index.job(name)


def admit_into(led: ledger.Ledger) -> tuple[list[decisions.Admission], list[decisions.Wait]]:
    """Start what may start this round, recording it in `led`.

    Jobs that are not queued start at once wherever their placement says. Queued jobs go in
    `key` order while the cluster has free slots: each process takes one, and a gang takes
    all of its n or none. A blocked gang reserves n of the free slots, so jobs behind it
    cannot take the slots it waits for and it is not starved; a job blocked by memory or by
    its node is passed over. The -S lines of a file start as slots allow, never more than
    its max at once.

    With an index, a job of one process on named nodes that found none eligible is kept with
    what it saw of them (`Unplaced`): later rounds pass it over with the same reason while
    neither it nor those nodes got better, deciding what a check would decide.
    """
    cluster = led.cluster
    admissions: list[decisions.Admission] = []
    waits: list[decisions.Wait] = []
    decided = led.decided
    lines: list[snapshot.JobView] = []  # queued -S files with more lines to start
    for job in led.in_state(snapshot.JobState.PENDING):
        if not job.queued and job.node is None and job.name not in decided:
            _start(led, job, slot=False, reason=decisions.AdmitReason.DIRECT, admissions=admissions, waits=waits)
    running_jobs = led.in_state(snapshot.JobState.RUNNING) if led.index is None else led.running_apart()
    for job in running_jobs:
        if job.commands_max is None or job.name in decided or processes(job) <= 0:
            continue
        if job.queued:
            lines.append(job)
        else:
            _start(led, job, slot=False, reason=decisions.AdmitReason.LINES, admissions=admissions, waits=waits)
    capacity = cpus = 0
    load, nodes = led.load, led.nodes
    for n in led.snapshot.nodes:
        if n.alive and not n.block and not n.expel and n.accept and not n.dontgo:
            capacity += max(0, int(nodes[n.name].cpus - load[n.name] + ledger.EPSILON))  # `led.free_slots`, inlined
            cpus += n.cpus
    running = 0
    if cluster.max_running is not None:  # counted only when there is a cap to count against
        if led.index is not None:
            running = led.index.slots()
        else:
            active = led.in_state(snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING, snapshot.JobState.PENDING)
            running = sum(1 for j in active if _occupies_queue_slot(j))
    limit = math.inf if cluster.max_running is None else cluster.max_running
    unplaced = led.index.unplaced() if led.index is not None and led.index.tables().distinct else None
    for job in _in_order(led, lines, full=capacity <= 0):
        if job.run_now and job.state is snapshot.JobState.QUEUED:
            _start(led, job, slot=False, reason=decisions.AdmitReason.RUN_NOW,
                   admissions=admissions, waits=waits)
            continue
        if capacity <= 0:
            break
        if running >= limit and job.state is snapshot.JobState.QUEUED:
            waits.append(decisions.Wait(job.name, decisions.WaitReason.MAX_RUNNING))
            break
        count = processes(job)
        if job.commands_max is not None:
            count = min(count, capacity)
        elif count > cpus:  # a gang larger than the cluster: waiting would block everyone
            waits.append(decisions.Wait(job.name, decisions.WaitReason.GANG))
            continue
        elif count > capacity:
            waits.append(decisions.Wait(job.name, decisions.WaitReason.GANG))
            capacity -= count  # reserved: what frees up goes to the gang first
            continue
        memos = unplaced if unplaced is not None and _memorable(job) else None
        kept = _kept(led, memos, job) if memos is not None else None
        if kept is not None:
            waits.append(decisions.Wait(job.name, kept))
            continue
        started = _start(led, job, slot=True, reason=_reason(job, decisions.AdmitReason.QUEUE),
                         admissions=admissions, waits=waits, count=count)
        if memos is not None:
            _remember(led, memos, job, None if started else waits[-1].reason)
        if started:
            capacity -= started
            running += 1 if job.state is snapshot.JobState.QUEUED else 0
        elif count > 1 and waits[-1].reason is decisions.WaitReason.NO_SLOTS:
            waits[-1] = decisions.Wait(job.name, decisions.WaitReason.GANG)
            capacity -= count
    return admissions, waits


def _reason(job: snapshot.JobView, first: decisions.AdmitReason) -> decisions.AdmitReason:
    return decisions.AdmitReason.LINES if job.state is snapshot.JobState.RUNNING else first


def _start(led: ledger.Ledger, job: snapshot.JobView, *, slot: bool, reason: decisions.AdmitReason,
           admissions: list[decisions.Admission], waits: list[decisions.Wait],
           count: int | None = None) -> int:
    """Place `count` processes of `job` (default: `processes(job)`); the number started."""
    wanted = processes(job) if count is None else count
    if wanted <= 0:
        return 0
    nodes = _take(led, job, wanted, slot=slot)
    if not nodes:
        waits.append(decisions.Wait(job.name, _why_not(led, job)))
        return 0
    first = job.commands_started if job.commands_max is not None else 0
    admissions.append(decisions.Admission(job.name, nodes, reason, first_line=first))
    led.decided.add(job.name)
    return len(nodes)


def admit(snap: snapshot.Snapshot) -> list[decisions.Admission]:
    """The admissions of one round on `snap`, queue order first."""
    return admit_into(ledger.Ledger(snap))[0]
