"""What the policy sees: frozen views of nodes, jobs and the cluster's knobs at one instant.

The control plane maps `mosix.api` objects into these; the policy never sees pydantic
models, so it stays cheap to construct in tests and in the simulators. Times are seconds on
one clock chosen by the caller (`now` is passed in, never read).
"""

from __future__ import annotations

import dataclasses
import enum
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mosix.policy import index as index_

DEFAULT_PRIORITY = 50
MAX_PRIORITY = 65535

REMOTE_IO_S_PER_MB = 0.1
"""Seconds each MB of I/O costs a job away from home: MOSIX forwards a system call per
block, and at 4 KiB per round trip of ~0.4 ms on a LAN one MB takes ~0.1 s of the job's time."""

IO_HOME_KBPS = 256.0
"""Decayed I/O rate (KB/s) under which a job is never brought home for its I/O: a trickle of
output is cheap to forward however long the job runs."""


class JobState(enum.StrEnum):
    """The job's life as the policy needs it; values match `mosix.api.job.Phase`."""

    QUEUED = "Queued"  # waiting in the cluster queue (-q)
    PENDING = "Pending"  # not queued, or released: waiting to be started somewhere
    RUNNING = "Running"
    MIGRATING = "Migrating"
    FROZEN = "Frozen"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class PlacementKind(enum.StrEnum):
    """mosrun's node assignment; values match `mosix.api.job.Placement`."""

    HOME = "Home"  # -h and the default
    BEST = "Best"  # -b
    NODE = "Node"  # -r{host}, -{n}, -{a.b.c.d}
    RANGE = "Range"  # -j{ranges}


class FreezeReason(enum.StrEnum):
    """mosps FRZ; values match `mosix.api.job.FreezeReason`."""

    AUTO = "Auto"
    EXPELLED = "Expelled"
    MANUAL = "Manual"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    """One node as `mosctl status` and the cluster configuration describe it.

    `local` is membership of this cluster; grid peers' nodes are not local and carry the
    peer's `outsider`/`dontgo`/`dont_take` flags. `load` is in CPU-bound processes.
    """

    name: str
    number: int
    address: str = ""
    cpus: int = 1
    speed: float = 1.0
    load: float = 0.0
    memory_free_mb: int = 0
    memory_total_mb: int = 0
    frozen: int = 0
    procs: int = 0
    alive: bool = True
    block: bool = False
    expel: bool = False
    accept: bool = True
    local: bool = True
    outsider: bool = False
    dontgo: bool = False
    dont_take: bool = False
    guests_running: int = 0
    guests_max: int = 10


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointView:
    """One checkpoint set; `node` holds its images (None: on storage every node reads)."""

    name: str
    time: float
    node: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessView:
    """One process of a gang (-P) or one started line of a commands file (-S), on its own node."""

    index: int
    node: str | None = None
    state: JobState = JobState.PENDING
    frozen_reason: FreezeReason | None = None  # frozen on its own (not with its whole job)
    started_at: float | None = None
    last_migration: float | None = None  # its own hysteresis: each process moves on its own
    checkpoints: tuple[CheckpointView, ...] = ()  # its own sets, for recovery


UNIT_SEPARATOR = "#"  # never in a job's key (Kubernetes names and namespaces cannot hold it)


def unit_name(job: str, index: int) -> str:
    """The name decisions give process `index` of job `job` when they act on that process alone."""
    return f"{job}{UNIT_SEPARATOR}{index}"


def split_unit(name: str) -> tuple[str, int | None]:
    """A decision's name back into (job, process index); the index is None for a whole job."""
    job, sep, index = name.rpartition(UNIT_SEPARATOR)
    return (job, int(index)) if sep and index.isdigit() else (name, None)


@dataclasses.dataclass(frozen=True, slots=True)
class JobView:
    """One job (one `mosrun`), with the options and state the decisions depend on.

    `name` must be unique in the snapshot (the control plane uses namespace/name).
    `priority` None means the cluster default. `position` orders a priority group (mosq
    advance/retard rewrite it; by default the submission time in ms) and `submitted` breaks
    ties. `memory_mb` is the most the job needs (-m), 0 when unknown. `commands_*` describe a
    -S commands file. `expected_remaining_s` is a hint; without it the balancer takes the
    job's age as its expected remaining time, as MOSIX does. `io_rate_kbps` is the job's
    decayed rate of I/O that goes home as its agent measured it (away: what crossed the link; at
    home: all its I/O, see `mosix.controller.views.home_io_kbps`); `stay_on_syscalls` is -c (never home for it).
    `processes` lists a gang's or a commands file's started processes (empty for a one-process
    job, which `node` describes).
    """

    name: str
    state: JobState = JobState.QUEUED
    priority: int | None = None
    position: int = 0
    submitted: int = 0
    run_now: bool = False
    queued: bool = True
    node: str | None = None
    home: str | None = None
    placement: PlacementKind = PlacementKind.HOME
    node_ref: str | None = None
    ranges: tuple[tuple[int, int], ...] = ()
    grid_class: int = 0
    memory_mb: int = 0
    parallel: int = 1
    commands_max: int | None = None
    commands_total: int = 0
    commands_started: int = 0
    commands_running: int = 0
    locked: bool = False
    migratable: bool = True
    started_at: float | None = None
    last_migration: float | None = None
    frozen_reason: FreezeReason | None = None
    cpu_demand: float = 1.0
    expected_remaining_s: float | None = None
    io_rate_kbps: float = 0.0
    stay_on_syscalls: bool = False
    checkpoints: tuple[CheckpointView, ...] = ()
    processes: tuple[ProcessView, ...] = ()

    def live_processes(self) -> tuple[ProcessView, ...]:
        """The processes not finished yet."""
        done = (JobState.SUCCEEDED, JobState.FAILED)
        return tuple(p for p in self.processes if p.state not in done)

    def effective_priority(self, default: int) -> int:
        """The priority in force: the job's own, or the cluster's default."""
        return default if self.priority is None else self.priority


def _default_limits() -> Mapping[int, float]:
    return types.MappingProxyType({0: 4.0})


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterView:
    """The MosixCluster knobs the policy reads.

    `freeze_limits` maps a grid class to the load per CPU above which that class's jobs are
    frozen (classes not listed are never frozen for load). A migration is worth it when the
    job's speed-up exceeds `min_gain` and the time it saves exceeds its cost:
    `migration_cost_s` plus `memory_mb / migration_mb_per_s`. The balancer examines at most
    `balance_sources` nodes per round (slowest first), which bounds a round on a big cluster. A job doing at least
    `io_home_kbps` of I/O (without -c) belongs at home; away, each MB of it costs
    `remote_io_s_per_mb` seconds (`mosix.policy.homing`).
    """

    default_priority: int = DEFAULT_PRIORITY
    max_running: int | None = None
    freeze_limits: Mapping[int, float] = dataclasses.field(default_factory=_default_limits)
    min_gain: float = 0.2
    hysteresis_s: float = 30.0
    memory_reserve_mb: int = 256
    migration_cost_s: float = 1.0
    migration_mb_per_s: float = 1000.0
    balance_sources: int = 256
    io_home_kbps: float = IO_HOME_KBPS
    remote_io_s_per_mb: float = REMOTE_IO_S_PER_MB


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one decision round looks at, taken at `now`.

    `index`, when the snapshot came from `JobIndex.snapshot_at`, holds the same jobs kept ordered
    and grouped between rounds; the round then reads it instead of walking every job (the
    decisions are the same either way)."""

    nodes: tuple[NodeView, ...]
    jobs: tuple[JobView, ...]
    cluster: ClusterView = dataclasses.field(default_factory=ClusterView)
    now: float = 0.0
    index: index_.JobIndex | None = dataclasses.field(default=None, compare=False, repr=False)
