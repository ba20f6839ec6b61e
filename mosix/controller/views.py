"""MOSIX objects → the policy core's frozen views (the only place that knows both shapes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from mosix.api import cluster, job, meta, node
from mosix.policy import index, snapshot

_DONE = (snapshot.JobState.SUCCEEDED, snapshot.JobState.FAILED)


def _ms(stamp: str | None) -> int:
    value = meta.seconds(stamp)
    return int(value * 1000) if value is not None else 0


def position(j: job.MosixJob) -> int:
    """Place within its priority group: mosq advance/retard's value, else the creation time in ms."""
    if j.spec.queue is not None and j.spec.queue.position is not None:
        return j.spec.queue.position
    return _ms(j.metadata.creation_timestamp)


def process_views(j: job.MosixJob) -> tuple[snapshot.ProcessView, ...]:
    """A gang's or commands file's processes, by index."""
    procs = sorted(((int(i), p) for i, p in j.status.processes.items()), key=lambda ip: ip[0])
    return tuple(snapshot.ProcessView(index=i, node=p.node, state=snapshot.JobState(p.phase.value),
                                      frozen_reason=snapshot.FreezeReason(p.frozen.value) if p.frozen else None,
                                      started_at=meta.seconds(p.start_time),
                                      last_migration=meta.seconds(p.last_migration_time),
                                      checkpoints=_checkpoints(p.checkpoints))
                 for i, p in procs)


def _checkpoints(sets: list[job.CheckpointSet]) -> tuple[snapshot.CheckpointView, ...]:
    return tuple(snapshot.CheckpointView(name=c.name, time=meta.seconds(c.time) or 0.0, node=c.node) for c in sets)


def job_view(j: job.MosixJob, key: str | None = None) -> snapshot.JobView:
    """The job as the policy sees it, named `key` (default: its name)."""
    s, st = j.spec, j.status
    queued = s.queue is not None
    commands = s.commands
    procs = process_views(j)
    started = len(procs) if procs else (st.running_lines or 0) + (st.finished_lines or 0)
    running = len([p for p in procs if p.state not in _DONE]) if procs else st.running_lines or 0
    return snapshot.JobView(
        name=key or j.name,
        state=snapshot.JobState(st.phase.value if (queued or st.phase != job.Phase.QUEUED) else "Pending"),
        priority=s.queue.priority if s.queue is not None else None,
        position=position(j),
        submitted=int(j.name) if j.name.isdigit() else _ms(j.metadata.creation_timestamp),
        run_now=bool(s.queue and s.queue.run_now),
        queued=queued,
        node=st.node,
        home=st.home_node or s.home_node,
        placement=snapshot.PlacementKind(s.placement.value),
        node_ref=s.node,
        ranges=tuple((r.first, r.last) for r in s.node_ranges),
        grid_class=s.grid_class,
        memory_mb=s.memory_mb or 0,
        parallel=s.parallel or 1,
        commands_max=commands.max_running if commands else None,
        commands_total=len(commands.lines) if commands else 0,
        commands_started=started,
        commands_running=running,
        locked=s.locked or s.batch == job.BatchMode.NATIVE,
        migratable=st.migratable and s.batch != job.BatchMode.NATIVE,
        started_at=meta.seconds(st.start_time),
        last_migration=meta.seconds(st.last_migration_time),
        frozen_reason=snapshot.FreezeReason(st.frozen.value) if st.frozen else None,
        io_rate_kbps=home_io_kbps(st, st.home_node or s.home_node),
        stay_on_syscalls=s.stay_on_syscalls,
        checkpoints=_checkpoints(st.checkpoints),
        processes=procs,
    )


def home_io_kbps(st: job.MosixJobStatus, home: str | None) -> float:
    """The I/O rate the policy weighs. Away from home it is what crosses the link (its agent's remote rate),
    so `-X` private files and its own root file system, local wherever it runs, never bring it home. At home
    it is all its I/O: there its working directory's bytes cannot be told from the others, and all of it
    is what could go home if the job left."""
    if st.node is not None and home is not None and st.node != home:
        return st.remote_io_kbps or 0.0
    return st.io_rate_kbps or 0.0


_READ = tuple(f for f in job.MosixJobStatus.model_fields if f not in ("priority", "where", "message"))
"""The status fields a job's view (`_map`) may read: all but those the plan writes for display."""

RECENT_SECONDS = 10.0  # about twice the agents' load-average period: arrivals not yet in their load


@dataclasses.dataclass(frozen=True, slots=True)
class _Mapped:
    """What a round reads of one job: its view, and what `arrivals` needs (parsed once)."""

    view: snapshot.JobView
    finished: bool
    target: str | None
    node: str | None
    pending: bool
    came: float
    processes: tuple[tuple[str, bool, float], ...] = ()  # (node, pending, came) of each placed -P/-S process


def _map(j: job.MosixJob, key: str) -> _Mapped:
    st = j.status
    came = 0.0
    if not st.phase.finished and not st.target_node:  # only then does `arrivals` look at the times
        came = max(meta.seconds(st.start_time) or 0.0, meta.seconds(st.last_migration_time) or 0.0)
    procs = () if st.phase.finished else tuple(  # a process about to move counts where it goes, as a job does
        (p.target_node or p.node, p.phase == job.Phase.PENDING or bool(p.target_node),
         max(meta.seconds(p.start_time) or 0.0, meta.seconds(p.last_migration_time) or 0.0))
        for p in st.processes.values()
        if p.node and p.phase in (job.Phase.PENDING, job.Phase.RUNNING, job.Phase.MIGRATING))
    return _Mapped(job_view(j, key), st.phase.finished, st.target_node or None, st.node,
                   st.phase == job.Phase.PENDING, came, procs)


def _arrivals(mapped: Iterable[_Mapped], now: float) -> dict[str, int]:
    count: dict[str, int] = {}
    for m in mapped:
        if m.finished:
            continue
        if m.processes:
            for node, pending, came in m.processes:
                if pending or now - came < RECENT_SECONDS:
                    count[node] = count.get(node, 0) + 1
            continue
        if m.target:
            count[m.target] = count.get(m.target, 0) + 1
            continue
        if m.node and (m.pending or now - m.came < RECENT_SECONDS):
            count[m.node] = count.get(m.node, 0) + 1
    return count


def arrivals(jobs: dict[str, job.MosixJob], now: float) -> dict[str, int]:
    """Jobs each node received (started there, migrated there, or about to be) too recently to show in its
    reported load: without them, consecutive rounds would send every job to the same idle node."""
    return _arrivals((_map(j, key) for key, j in jobs.items()), now)


class JobViews:
    """The jobs of the previous round mapped, by key and resourceVersion: a job unchanged since is
    not mapped again. Mapping (timestamps parsed, enums converted) costs more than deciding at
    10,000 jobs, and between rounds few jobs change. A job without a resourceVersion is always
    mapped afresh. Keep one per store: resourceVersions are only unique within one.

    The views of the jobs a round decides on (not finished, not being deleted) are also kept in
    `index`, told only of the jobs mapped afresh and the jobs gone, so a round on its snapshot
    neither orders nor groups every job again (`mosix.policy.index`). The nodes' views are kept
    too, the previous object for a node whose view did not change, so the index sees which did.

    It also keeps the keys of the jobs that changed since a round last planned (`changed`, `planned`) and
    the jobs that round patched: a job neither changed nor patched since would get the same patches from
    its own spec and status again (none), so the plan's per-job passes visit only the others."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, _Mapped]] = {}
        self._keys: set[str] = set()
        self._nodes: dict[str, snapshot.NodeView] = {}
        self._changed: set[str] = set()
        self._patched: set[str] = set()
        self._asked: set[str] = set()
        self.default_priority: int | None = None
        """The cluster's default priority when a round last planned (None: never)."""
        self.index = index.JobIndex()

    def mapped(self, jobs: dict[str, job.MosixJob]) -> dict[str, _Mapped]:
        """Every job of `jobs` mapped; forgets jobs no longer there."""
        out: dict[str, _Mapped] = {}
        seen: dict[str, tuple[str, _Mapped]] = {}
        for key, j in jobs.items():
            rv = j.metadata.resource_version
            hit = self._seen.get(key)
            if hit is not None and rv is not None and hit[0] == rv:
                m = hit[1]
            else:
                m = _map(j, key)
                self._changed.add(key)
                if m.finished or j.metadata.deletion_timestamp:
                    self.index.remove(key)
                else:
                    self.index.put(m.view)
            out[key] = m
            if rv is not None:
                seen[key] = (rv, m)
        self._seen = seen
        keys = set(jobs)
        for key in self._keys - keys:
            self.index.remove(key)
        self._keys = keys
        return out

    def changed(self, jobs: dict[str, job.MosixJob]) -> dict[str, job.MosixJob]:
        """The jobs of `jobs` mapped afresh since the last `planned`, or patched by that round's plan, by key."""
        return {key: jobs[key] for key in sorted(self._changed | self._patched) if key in jobs}

    def patched(self, key: str, old: job.MosixJob, new: job.MosixJob) -> None:
        """Job `key`, read as `old`, is `new` after a round's status patch: when nothing a view reads differs
        (the patch wrote only the priority as shown, where or message), the mapping of `old` stands for
        `new`, so such a patch does not make the next round map the job again. Compared, not assumed:
        someone else may have changed the job in between. Nor is such a job of one process visited again by
        the plan's per-job passes, unless they asked for something of it: they read none of those fields."""
        hit = self._seen.get(key)
        rv = new.metadata.resource_version
        if (hit is None or rv is None or hit[0] != old.metadata.resource_version or old.spec != new.spec
                or old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
                or any(getattr(old.status, f) != getattr(new.status, f) for f in _READ)):
            return
        self._seen[key] = (rv, hit[1])
        if key not in self._asked and not job.multi(new.spec):
            self._patched.discard(key)

    def planned(self, patched: Iterable[str], asked: Iterable[str], default_priority: int | None = None) -> None:
        """A round planned every job `changed` gave it, with the cluster's `default_priority`, and patched the
        jobs `patched`, `asked` by the plan's per-job passes."""
        self.default_priority = default_priority
        self._changed = set()
        self._patched = set(patched)
        self._asked = set(asked)

    def nodes(self, views: Iterable[snapshot.NodeView]) -> tuple[snapshot.NodeView, ...]:
        """`views`, each replaced by the node's previous view when equal to it."""
        kept = self._nodes
        out = tuple(kept[n.name] if kept.get(n.name) == n else n for n in views)
        self._nodes = {n.name: n for n in out}
        return out


def node_view(n: node.MosixNode, *, now: float, dead_after: float, arrived: int = 0) -> snapshot.NodeView:
    st = n.status
    alive = n.alive(now, dead_after)
    return snapshot.NodeView(
        name=n.name,
        number=n.spec.number,
        address=n.spec.address,
        cpus=max(st.cpus, 1),
        speed=float(st.speed or 1),
        load=st.load + arrived,
        memory_free_mb=st.memory.available_mb,
        memory_total_mb=st.memory.total_mb,
        frozen=st.frozen,
        procs=st.procs,
        alive=alive,
        block=n.spec.block,
        expel=n.spec.expel,
        accept=st.accept or not alive,
        guests_running=st.guests.running,
        guests_max=n.spec.max_guests,
    )


def cluster_view(c: cluster.MosixCluster) -> snapshot.ClusterView:
    s = c.spec
    return snapshot.ClusterView(
        default_priority=s.queue.default_priority,
        max_running=s.queue.max_running,
        freeze_limits={int(k): v for k, v in s.freezing.load_limits.items()},
        min_gain=s.balancing.min_gain,
        hysteresis_s=s.balancing.hysteresis_seconds,
        memory_reserve_mb=s.balancing.memory_reserve_mb,
        migration_cost_s=s.balancing.migration_cost_seconds,
        migration_mb_per_s=s.balancing.migration_mb_per_second,
        balance_sources=s.balancing.sources_per_round,
    )


def snapshot_of(jobs: dict[str, job.MosixJob], nodes: list[node.MosixNode], conf: cluster.MosixCluster,
                now: float, cache: JobViews | None = None) -> snapshot.Snapshot:
    """One decision round's input, jobs by their key; finished jobs and jobs being deleted are left out.
    `cache` keeps the jobs' views between rounds (`JobViews`); the snapshot then comes from its index,
    with the jobs in the order the index first saw them."""
    mapped = (cache or JobViews()).mapped(jobs)
    recent = _arrivals(mapped.values(), now)
    node_views = (node_view(n, now=now, dead_after=conf.spec.dead_after_seconds, arrived=recent.get(n.name, 0))
                  for n in nodes)
    if cache is not None:
        return cache.index.snapshot_at(cache.nodes(node_views), cluster_view(conf), now)
    return snapshot.Snapshot(
        nodes=tuple(node_views),
        jobs=tuple(mapped[key].view for key, j in jobs.items()
                   if not mapped[key].finished and not j.metadata.deletion_timestamp),
        cluster=cluster_view(conf),
        now=now,
    )
