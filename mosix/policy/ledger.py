"""The projected state of one decision round.

Decisions made earlier in a round change what later ones see (a node that just received a
job is busier), so every module works against one `Ledger`: the snapshot's indexes plus the
load, free memory and guest counts as this round's decisions leave them, and the set of jobs
already decided (each job gets at most one decision per round).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from mosix.policy import snapshot

EPSILON = 1e-9

Rank = tuple[bool, float, float, int, int, str]


def unit_time(node: snapshot.NodeView, load: float) -> float:
    """Seconds per unit of work for one process on `node` carrying `load` processes."""
    speed = node.speed if node.speed > 0 else 1.0
    return max(1.0, load / max(node.cpus, 1)) / speed


def unit(job: snapshot.JobView, proc: snapshot.ProcessView) -> snapshot.JobView:
    """One running or frozen process of a gang or commands file, as a job of one process, so the
    per-process decisions (freezing, balancing, recovery) treat it like any other; named by `snapshot.unit_name`."""
    return snapshot.JobView(
        name=snapshot.unit_name(job.name, proc.index), state=proc.state, priority=job.priority, queued=False,
        node=proc.node, home=job.home, grid_class=job.grid_class, memory_mb=job.memory_mb, locked=job.locked,
        migratable=job.migratable, started_at=proc.started_at, last_migration=proc.last_migration,
        frozen_reason=proc.frozen_reason, cpu_demand=job.cpu_demand, stay_on_syscalls=job.stay_on_syscalls,
        checkpoints=proc.checkpoints)


def rank(node: snapshot.NodeView, load: float, free_mb: int, demand: float, slot: bool) -> Rank:
    """The best-node order, better first, for `node` carrying `load` with `free_mb` free; criteria in order:

    1. when the process needs an idle CPU (`slot`), nodes that have one;
    2. seconds per unit of work there once a process of `demand` is added (speed and
       load per CPU together);
    3. load per CPU once it is added;
    4. free memory, more first;
    5. node number, lower first;
    6. node name (deterministic tie-break).
    """
    load = load + demand
    cpus = max(node.cpus, 1)
    busy = slot and load > cpus + EPSILON
    per_cpu = load / cpus
    speed = node.speed if node.speed > 0 else 1.0
    time = max(1.0, per_cpu) / speed  # unit_time(node, load), inlined: every node is ranked each round
    return (busy, time, per_cpu, -free_mb, node.number, node.name)


class Ledger:
    """Indexes of a snapshot and the node state projected by this round's decisions."""

    def __init__(self, snap: snapshot.Snapshot) -> None:
        self.snapshot = snap
        self.cluster = snap.cluster
        self.now = snap.now
        self.index = snap.index if snap.index is not None and snap.index.current(snap) else None
        """The snapshot's `index.JobIndex`, when it has one: the modules' fast paths read it."""
        if self.index is not None:  # the same tables, kept between rounds: shared, or copied where a round writes
            tables = self.index.tables()
            self.nodes, self.by_number, self.by_address = tables.nodes, tables.by_number, tables.by_address
            self.load, self.free_mb, self.guests = tables.load.copy(), tables.free_mb.copy(), tables.guests.copy()
            self.up, self.grid, self.version = tables.up, tables.grid, tables.version.copy()
        else:
            self.nodes = {n.name: n for n in snap.nodes}
            self.by_number = {n.number: n for n in snap.nodes}
            self.by_address = {n.address: n for n in snap.nodes if n.address}
            self.load = {n.name: n.load for n in snap.nodes}
            self.free_mb = {n.name: n.memory_free_mb for n in snap.nodes}
            self.guests = {n.name: n.guests_running for n in snap.nodes}
            self.up = {n.name for n in snap.nodes if n.alive}  # `alive` as a set, for passes over every job
            self.grid = any(not n.local for n in snap.nodes)  # guests exist only on other clusters' nodes
            self.version = dict.fromkeys(self.nodes, 0)
        self.decided: set[str] = set()
        self._touched: set[str] = set()  # nodes whose load or free memory differ from the snapshot's
        self._heaps: dict[tuple[float, bool], list[tuple[Rank, int]]] = {}
        self.by_state: dict[snapshot.JobState, list[snapshot.JobView]] = {}
        self.units: dict[snapshot.JobState, list[snapshot.JobView]] = {state: [] for state in snapshot.JobState}
        self._apart = self.index.apart() if self.index is not None else []
        few = self._apart if self.index is not None else snap.jobs  # every job with processes or PENDING
        if self.index is None:
            self.by_state = {state: [] for state in snapshot.JobState}
            for job in snap.jobs:
                self.by_state[job.state].append(job)
        for job in few:
            for proc in job.processes:
                if proc.state in (snapshot.JobState.RUNNING, snapshot.JobState.FROZEN) and proc.node is not None:
                    self.units[proc.state].append(unit(job, proc))
        for job in few:
            # Started but not yet running: the agent's reported load does not show it yet.
            if job.processes:
                for proc in job.processes:
                    if proc.state is snapshot.JobState.PENDING and proc.node in self.nodes:
                        self.load[proc.node] += job.cpu_demand
                        self._touched.add(proc.node)
            elif job.state is snapshot.JobState.PENDING and job.node in self.nodes:
                self.load[job.node] += job.cpu_demand
                self._touched.add(job.node)
        for name in self._touched:
            self.version[name] += 1  # an index's ranks of these nodes are stale

    def _state(self, state: snapshot.JobState) -> list[snapshot.JobView]:
        jobs = self.by_state.get(state)
        if jobs is None:  # from the index, on first use: cheap for the small states only
            assert self.index is not None
            jobs = self.by_state[state] = self.index.in_state(state)
        return jobs

    def touched(self) -> set[str]:
        """The nodes whose load or free memory this round differ from the snapshot's (their version is not 0)."""
        return self._touched

    def apart(self) -> list[snapshot.JobView]:
        """With an index, the jobs it keeps apart (`index.JobIndex.apart`), in snapshot order."""
        return self._apart

    def running_apart(self) -> list[snapshot.JobView]:
        """With an index: the running jobs it keeps apart (every -S file among them), in snapshot order."""
        return [job for job in self._apart if job.state is snapshot.JobState.RUNNING]

    def in_state(self, *states: snapshot.JobState) -> list[snapshot.JobView]:
        """The snapshot's jobs in any of `states`, in snapshot order within each state."""
        if len(states) == 1:
            return self._state(states[0])
        return [job for state in states for job in self._state(state)]

    def alive(self, name: str | None) -> bool:
        """True when `name` is a known node that is up."""
        node = self.nodes.get(name) if name is not None else None
        return node is not None and node.alive

    def keeps_its_jobs(self, name: str | None) -> bool:
        """True when node `name` is dont_take: its jobs are taken nowhere but home."""
        node = self.nodes.get(name) if name is not None else None
        return node is not None and node.dont_take

    def is_guest(self, job: snapshot.JobView, node: snapshot.NodeView) -> bool:
        """A guest in the grid's sense: running on another cluster's node."""
        return not node.local and node.name != job.home

    def add(self, job: snapshot.JobView, name: str) -> None:
        """Account for `job` starting on node `name`."""
        self.load[name] += job.cpu_demand
        self.free_mb[name] -= job.memory_mb
        if self.is_guest(job, self.nodes[name]):
            self.guests[name] += 1
        self._changed(name)

    def remove(self, job: snapshot.JobView, name: str) -> None:
        """Account for `job` leaving node `name` (moved, frozen or finished)."""
        if name not in self.nodes:
            return
        self.load[name] = max(0.0, self.load[name] - job.cpu_demand)
        self.free_mb[name] += job.memory_mb
        if self.is_guest(job, self.nodes[name]):
            self.guests[name] = max(0, self.guests[name] - 1)
        self._changed(name)

    def move(self, job: snapshot.JobView, source: str, target: str) -> None:
        """Account for `job` migrating from `source` to `target`."""
        self.remove(job, source)
        self.add(job, target)

    def free_slots(self, name: str) -> int:
        """Whole CPUs left idle on node `name`."""
        node = self.nodes[name]
        return max(0, int(node.cpus - self.load[name] + EPSILON))

    def rank(self, node: snapshot.NodeView, demand: float, slot: bool) -> Rank:
        """`rank` with this round's load and free memory of `node`."""
        return rank(node, self.load[node.name], self.free_mb[node.name], demand, slot)

    def ranked(self, demand: float, slot: bool) -> list[tuple[Rank, int]]:
        """A heap of (rank, version) for processes of `demand`; stale entries are skipped by
        `first_ranked`. Kept up to date as the round's decisions change nodes.

        From an index, the heap starts as its copy of the nodes' ranks kept sorted between rounds
        (a sorted list is a heap), and only the nodes this round has changed so far are ranked
        again: their copied entries are stale (`version`)."""
        heap = self._heaps.get((demand, slot))
        if heap is None and self.index is not None and demand == 1.0 and self.index.tables().distinct:
            heap = self.index.ranked(slot).copy()
            for name in self._touched:
                heapq.heappush(heap, (self.rank(self.nodes[name], demand, slot), self.version[name]))
            self._heaps[(demand, slot)] = heap
        if heap is None:
            heap = []
            load, free, version = self.load, self.free_mb, self.version
            for n in self.snapshot.nodes:  # `rank`, inlined: every node, for every heap of every round
                name = n.name
                cpus = max(n.cpus, 1)
                after = load[name] + demand
                per_cpu = after / cpus
                time = max(1.0, per_cpu) / (n.speed if n.speed > 0 else 1.0)
                rank = (slot and after > cpus + EPSILON, time, per_cpu, -free[name], n.number, name)
                heap.append((rank, version[name]))
            heapq.heapify(heap)
            self._heaps[(demand, slot)] = heap
        return heap

    def first_ranked(self, heap: list[tuple[Rank, int]], accept: Callable[[snapshot.NodeView], bool],
                     limit: int) -> list[snapshot.NodeView]:
        """Up to `limit` nodes that `accept` takes, best-ranked first, walking `heap` from its
        top; what was walked goes back unchanged (those nodes did not change) and stale
        entries are dropped."""
        found: list[snapshot.NodeView] = []
        walked: list[tuple[Rank, int]] = []
        version = self.version
        while len(found) < limit and heap:
            entry = heapq.heappop(heap)
            name = entry[0][5]
            if entry[1] != version[name]:
                continue
            walked.append(entry)
            node = self.nodes[name]
            if accept(node):
                found.append(node)
        for entry in walked:
            heapq.heappush(heap, entry)
        return found

    def push_ranked(self, heap: list[tuple[Rank, int]], node: snapshot.NodeView, demand: float,
                    slot: bool) -> None:
        """Put `node` back into `heap` with its current rank."""
        heapq.heappush(heap, (self.rank(node, demand, slot), self.version[node.name]))

    def _changed(self, name: str) -> None:
        self.version[name] += 1
        self._touched.add(name)
        node = self.nodes[name]
        for (demand, slot), heap in self._heaps.items():
            self.push_ranked(heap, node, demand, slot)
