"""The jobs kept between decision rounds, indexed as a round reads them, updated per changed job.

At 10,000 queued jobs a round that groups, filters and orders every job again spends most of
its time doing so, while between two rounds only a few jobs change. A `JobIndex` is told of
each change (`put`, `remove`) and keeps: the jobs in snapshot order, the waiting queue sorted by
`queue.key` (a plain sorted list: bisect beats a tree at this size, and a sorted list is also a
heap), the running and migrating jobs of each node, and the few jobs the policy treats apart
(processes of gangs and commands files, I/O-heavy jobs away from home, jobs using a queue
slot). `snapshot_at` hands the policy a `Snapshot` carrying the index; the `Ledger` then reads
these instead of walking every job. It also keeps what earlier rounds summed up, for later rounds
to reuse while it holds: the balancer's settled sources, and the waiting jobs no node was found for.
Pure data: no I/O, no clock.

Snapshot order is the order jobs were first put. Where the policy's decisions depend on the
order of jobs (direct starts, -S lines, sums of remaining time) the index gives that order.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mosix.policy import ledger, snapshot

if TYPE_CHECKING:
    from mosix.policy import balancing
    from mosix.policy import queue as queue_  # JobIndex.queue would shadow it

Entry = tuple[bool, int, int, int, str]
"""`queue.key` of a waiting job: (not run now, priority, position, submitted, name)."""

OnNode = tuple[int, str, snapshot.JobView, bool]
"""A running or migrating job on a node: (place in snapshot order, name, job, whether the balancer
could ever move it: migratable, unlocked, one process). Places are unique: jobs are never compared."""

_ON_NODE = (snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING)
_SLOT = (snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING, snapshot.JobState.PENDING)
_LIVE = (snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING, snapshot.JobState.FROZEN,
         snapshot.JobState.PENDING)


def entry(job: snapshot.JobView, default_priority: int) -> Entry:
    """`queue.key(job)`, spelled out here so the index needs no policy module."""
    priority = default_priority if job.priority is None else job.priority
    return (not job.run_now, priority, job.position, job.submitted, job.name)


def _waits(job: snapshot.JobView) -> bool:
    return job.state is snapshot.JobState.QUEUED and job.queued


def _apart(job: snapshot.JobView) -> bool:
    """Jobs a round looks at one by one: processes of their own, -S lines, a PENDING start, I/O."""
    return (bool(job.processes) or job.commands_max is not None or job.state is snapshot.JobState.PENDING
            or (job.io_rate_kbps > 0.0 and not job.stay_on_syscalls and job.node != job.home))


class Tables:
    """The nodes' tables a round starts from (`ledger.Ledger`'s), kept between rounds: a node
    that is not the same object as in the previous round's nodes is entered again. Also the
    nodes' ranks for a process of demand 1 (`ledger.rank`), sorted, with and without a slot."""

    def __init__(self) -> None:
        self.seen: tuple[snapshot.NodeView, ...] | None = None
        self.nodes: dict[str, snapshot.NodeView] = {}
        self.by_number: dict[int, snapshot.NodeView] = {}
        self.by_address: dict[str, snapshot.NodeView] = {}
        self.load: dict[str, float] = {}
        self.free_mb: dict[str, int] = {}
        self.guests: dict[str, int] = {}
        self.up: set[str] = set()
        self.grid = False
        self.version: dict[str, int] = {}
        self.ranked: dict[bool, list[tuple[ledger.Rank, int]]] = {False: [], True: []}
        self.slowest: list[tuple[float, str, int]] = []
        """(-unit time, name, version 0) of every node, sorted: the balancer's sources, slowest first."""
        self._outside = 0  # nodes of other clusters (`grid`)
        self.epoch = 0
        """Counts the times the nodes changed by name, number or address (or may have): while it stays, the
        same names, numbers and addresses name the same nodes."""
        self.distinct = False
        """No two nodes share a name, number or address (else the tables are built afresh each time,
        and a round ranks the nodes itself)."""

    def update(self, nodes: tuple[snapshot.NodeView, ...]) -> None:
        """Bring the tables to `nodes`: per node when at most a quarter of them changed state, else afresh."""
        seen, self.seen = self.seen, nodes
        if nodes is seen:
            return
        if seen is None or not self.distinct or len(seen) != len(nodes):
            self._afresh(nodes)
            return
        changed = [(old, new) for old, new in zip(seen, nodes, strict=True) if old is not new]
        renamed = any((old.name, old.number, old.address) != (new.name, new.number, new.address)
                      for old, new in changed)
        if renamed or len(changed) * 4 > len(nodes):
            self._afresh(nodes, same=not renamed)
            return
        for old, new in changed:
            self._enter(old, new)

    def _afresh(self, nodes: tuple[snapshot.NodeView, ...], *, same: bool = False) -> None:
        """The tables built from `nodes`; `same`: the same nodes as before by name, number and address."""
        self.epoch += 0 if same else 1
        self.nodes = {n.name: n for n in nodes}
        self.by_number = {n.number: n for n in nodes}
        self.by_address = {n.address: n for n in nodes if n.address}
        self.load = {n.name: n.load for n in nodes}
        self.free_mb = {n.name: n.memory_free_mb for n in nodes}
        self.guests = {n.name: n.guests_running for n in nodes}
        self.up = {n.name for n in nodes if n.alive}
        self._outside = sum(1 for n in nodes if not n.local)
        self.grid = self._outside > 0
        self.version = dict.fromkeys(self.nodes, 0)
        load, free = self.load, self.free_mb  # by name, as a round ranks even two nodes of one name
        self.ranked = {slot: sorted((ledger.rank(n, load[n.name], free[n.name], 1.0, slot), 0) for n in nodes)
                       for slot in (False, True)}
        self.slowest = sorted((-ledger.unit_time(self.nodes[n.name], load[n.name]), n.name, 0) for n in nodes)
        addresses = sum(1 for n in nodes if n.address)
        # two nodes of one name, number or address: only building afresh keeps the last one, as a round does
        self.distinct = len(self.nodes) == len(self.by_number) == len(nodes) and len(self.by_address) == addresses

    def _enter(self, old: snapshot.NodeView, new: snapshot.NodeView) -> None:
        """`new` in place of `old`, the same node (name, number and address) in a new state."""
        name = new.name
        self.nodes[name] = self.by_number[new.number] = new
        if new.address:
            self.by_address[new.address] = new
        self.load[name], self.free_mb[name], self.guests[name] = new.load, new.memory_free_mb, new.guests_running
        if new.alive:
            self.up.add(name)
        else:
            self.up.discard(name)
        self._outside += (not new.local) - (not old.local)
        self.grid = self._outside > 0
        slowest = self.slowest
        del slowest[bisect.bisect_left(slowest, (-ledger.unit_time(old, old.load), name, 0))]
        bisect.insort(slowest, (-ledger.unit_time(new, new.load), name, 0))
        for slot, ranks in self.ranked.items():
            del ranks[bisect.bisect_left(ranks, (ledger.rank(old, old.load, old.memory_free_mb, 1.0, slot), 0))]
            bisect.insort(ranks, (ledger.rank(new, new.load, new.memory_free_mb, 1.0, slot), 0))


class JobIndex:
    """Every job of a cluster between rounds, with the orders and groupings a round needs."""

    def __init__(self, default_priority: int = snapshot.DEFAULT_PRIORITY) -> None:
        self._jobs: dict[str, snapshot.JobView] = {}
        self._seq: dict[str, int] = {}
        self._next = 0
        self._default = default_priority
        self._queue: list[Entry] = []
        self._adding: list[Entry] = []  # waiting jobs put since the queue was last sorted
        self._states: dict[snapshot.JobState, dict[str, snapshot.JobView]] = {s: {} for s in snapshot.JobState}
        self._on: dict[snapshot.JobState, dict[str, list[OnNode]]] = {s: {} for s in _ON_NODE}
        self._live: dict[str, dict[str, snapshot.JobView]] = {}  # one-process live jobs by node
        self._apart: dict[str, snapshot.JobView] = {}
        self._slots: set[str] = set()
        self._tuple: tuple[snapshot.JobView, ...] | None = None
        self._tables = Tables()
        self._waiting_by: dict[tuple[int | None, int], int] = {}  # QUEUED jobs by (priority, grid class)
        self._changes: dict[str, int] = {}  # per node: running or migrating jobs there put or removed, ever
        self._settled: dict[str, balancing.Settled] = {}
        self._settled_for: snapshot.ClusterView | None = None
        self._unplaced: dict[str, queue_.Unplaced] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: snapshot.JobView) -> None:
        """Add `job`, or replace the job of that name (it keeps its place in snapshot order)."""
        old = self._jobs.get(job.name)
        if old is not None:
            if old is job:
                return
            self._unlink(old)
            self._unplaced.pop(job.name, None)
        else:
            self._seq[job.name] = self._next
            self._next += 1
        self._jobs[job.name] = job
        self._link(job)
        self._tuple = None

    def remove(self, name: str) -> None:
        """Forget job `name` (finished or deleted); unknown names are ignored."""
        old = self._jobs.pop(name, None)
        if old is not None:
            self._unlink(old)
            self._unplaced.pop(name, None)
            del self._seq[name]
            self._tuple = None

    def update(self, jobs: Iterable[snapshot.JobView]) -> None:
        """`put` each of `jobs`."""
        for job in jobs:
            self.put(job)

    def _link(self, job: snapshot.JobView) -> None:
        name = job.name
        self._states[job.state][name] = job
        if job.state is snapshot.JobState.QUEUED:
            group = (job.priority, job.grid_class)
            self._waiting_by[group] = self._waiting_by.get(group, 0) + 1
        if _waits(job):
            self._adding.append(entry(job, self._default))
        if job.state in _ON_NODE and job.node is not None:
            self._changes[job.node] = self._changes.get(job.node, 0) + 1
            bisect.insort(self._on[job.state].setdefault(job.node, []), (self._seq[name], name, job, (
                job.migratable and not job.locked and job.parallel <= 1 and job.commands_max is None)))
        if job.state in _LIVE and job.node is not None and not job.processes:
            self._live.setdefault(job.node, {})[name] = job
        if _apart(job):
            self._apart[name] = job
        if job.queued and job.state in _SLOT and job.node is not None:
            self._slots.add(name)

    def _unlink(self, job: snapshot.JobView) -> None:
        name = job.name
        del self._states[job.state][name]
        if job.state is snapshot.JobState.QUEUED:
            group = (job.priority, job.grid_class)
            self._waiting_by[group] -= 1
            if not self._waiting_by[group]:
                del self._waiting_by[group]
        if _waits(job):
            self._sorted()
            del self._queue[bisect.bisect_left(self._queue, entry(job, self._default))]
        if job.state in _ON_NODE and job.node is not None:
            self._changes[job.node] += 1
            on = self._on[job.state][job.node]
            del on[bisect.bisect_left(on, (self._seq[name], name))]
            if not on:
                del self._on[job.state][job.node]
        if job.state in _LIVE and job.node is not None and not job.processes:
            live = self._live[job.node]
            del live[name]
            if not live:
                del self._live[job.node]
        self._apart.pop(name, None)
        self._slots.discard(name)

    def _sorted(self) -> None:
        """The jobs put since into the sorted queue: a few by bisection, many by one sort."""
        if len(self._adding) > 64:
            self._queue += self._adding
            self._queue.sort()
        else:
            for each in self._adding:
                bisect.insort(self._queue, each)
        self._adding.clear()

    def snapshot_at(self, nodes: tuple[snapshot.NodeView, ...], cluster: snapshot.ClusterView,
                 now: float) -> snapshot.Snapshot:
        """A round's snapshot of these jobs, carrying the index (valid until the next change)."""
        if cluster.default_priority != self._default:  # the queue order of unset priorities moved
            self._default = cluster.default_priority
            self._queue = sorted(entry(j, self._default) for j in self._jobs.values() if _waits(j))
            self._adding.clear()
        self._sorted()
        self._tables.update(nodes)
        return snapshot.Snapshot(nodes, self.jobs(), cluster, now, index=self)

    # ---------------------------------------------------------------- what a round reads

    def jobs(self) -> tuple[snapshot.JobView, ...]:
        """Every job, in snapshot order."""
        if self._tuple is None:
            self._tuple = tuple(self._jobs.values())
        return self._tuple

    def current(self, snap: snapshot.Snapshot) -> bool:
        """Is `snap` this index's latest snapshot (no change since)?"""
        return (snap.index is self and self._tuple is not None and snap.jobs is self._tuple
                and snap.nodes is self._tables.seen and snap.cluster.default_priority == self._default)

    def tables(self) -> Tables:
        """The nodes' tables of the latest snapshot."""
        return self._tables

    def ranked(self, slot: bool) -> list[tuple[ledger.Rank, int]]:
        """Every node's `ledger.rank` for a process of demand 1 (and `slot`) in the latest
        snapshot, with version 0, sorted: a heap a round copies."""
        return self._tables.ranked[slot]

    def job(self, name: str) -> snapshot.JobView:
        return self._jobs[name]

    def seq(self, name: str) -> int:
        """The job's place in snapshot order."""
        return self._seq[name]

    def in_state(self, state: snapshot.JobState) -> list[snapshot.JobView]:
        """The jobs in `state`, in snapshot order (sorted on each call: meant for the small states)."""
        seq = self._seq
        return sorted(self._states[state].values(), key=lambda j: seq[j.name])

    def count(self, state: snapshot.JobState) -> int:
        return len(self._states[state])

    def waiting_by(self) -> dict[tuple[int | None, int], int]:
        """How many jobs are QUEUED, by (priority, None for the default; grid class)."""
        return self._waiting_by

    def queue(self) -> list[Entry]:
        """The waiting jobs (QUEUED and queued) as their `queue.key`, first out first."""
        self._sorted()
        return self._queue

    def nodes_with(self, state: snapshot.JobState) -> Iterable[str]:
        """The nodes some job in `state` (RUNNING or MIGRATING) is on."""
        return self._on[state].keys()

    def on(self, state: snapshot.JobState, node: str) -> list[snapshot.JobView]:
        """The jobs in `state` (RUNNING or MIGRATING) on `node`, in snapshot order."""
        return [each[2] for each in self._on[state].get(node, ())]

    def entries_on(self, state: snapshot.JobState, node: str) -> list[OnNode]:
        """`on`'s jobs as the index keeps them (`OnNode`): not to be changed."""
        return self._on[state].get(node, [])

    def changes(self, node: str) -> int:
        """How many times a running or migrating job on `node` was put or removed: unchanged, the same jobs."""
        return self._changes.get(node, 0)

    def settled(self, cluster: snapshot.ClusterView) -> dict[str, balancing.Settled]:
        """The balancer's summaries of source nodes, kept between rounds (`balancing.Settled`); forgotten
        when the cluster's knobs change."""
        if cluster != self._settled_for:
            self._settled, self._settled_for = {}, cluster
        return self._settled

    def unplaced(self) -> dict[str, queue_.Unplaced]:
        """Waiting jobs a round found no node for, with what they saw (`queue_.Unplaced`), kept between rounds;
        a job's is forgotten when it changes or leaves."""
        return self._unplaced

    def live_on(self) -> dict[str, dict[str, snapshot.JobView]]:
        """One-process jobs running, migrating, frozen or pending, by node."""
        return self._live

    def apart(self) -> list[snapshot.JobView]:
        """Jobs with processes, -S files, PENDING jobs and I/O jobs away from home, in snapshot order."""
        seq = self._seq
        return sorted(self._apart.values(), key=lambda j: seq[j.name])

    def slots(self) -> int:
        """Queued jobs running, migrating or pending on a node: the ones `max_running` counts."""
        return len(self._slots)
