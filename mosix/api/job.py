"""MosixJob: one `mosrun` — a containerized process with MOSIX's options, and what became of it."""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import Field

from mosix.api import meta

MAX_PRIORITY = 65535
DEFAULT_IMAGE = "mosix/testload:local"
NODE_REF_PATTERN = r"^([0-9]+|[0-9]{1,3}(\.[0-9]{1,3}){3}|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$"


class Placement(enum.StrEnum):
    """Where the job starts: mosrun's node-assignment options."""

    HOME = "Home"  # -h, and the default: start on the home node, free to migrate
    BEST = "Best"  # -b
    NODE = "Node"  # -r{host}, -{n}, -{a.b.c.d}
    RANGE = "Range"  # -j{ranges}


class BatchMode(enum.StrEnum):
    """mosrun -E / -M: a batch job sent to another node of the cluster."""

    NATIVE = "Native"  # -E: a native Linux process, never migrates
    MOSIX = "Mosix"  # -M: a MOSIX process whose home node may be another node


class Unsupported(enum.StrEnum):
    """What happens when the job uses something checkpointing cannot carry (mosrun -e / -w)."""

    ABORT = "Abort"
    CONTINUE = "Continue"  # -e
    WARN = "Warn"  # -w


class FreezeReason(enum.StrEnum):
    """mosps FRZ: why a job is frozen."""

    AUTO = "Auto"  # A: the node's load is too high for its class
    EXPELLED = "Expelled"  # E: evacuated from a node that was reclaimed
    MANUAL = "Manual"  # M: the user asked


class AfterCheckpoint(enum.StrEnum):
    """migrate checkpoint / checkstop / exit: what the process does after the checkpoint."""

    CONTINUE = "Continue"
    STOP = "Stop"
    EXIT = "Exit"


class MigrationMethod(enum.StrEnum):
    """How a requested migration carries the memory: chosen by size, or as the user asked."""

    AUTO = "Auto"  # post-copy above the agent's --postcopy-above-mb, else stop-and-copy
    STOP_AND_COPY = "StopAndCopy"  # every page before the target runs (freeze grows with memory)
    POST_COPY = "PostCopy"  # the target runs at once and fetches pages as they are touched


class Phase(enum.StrEnum):
    """The job's life, in the order it is usually lived."""

    QUEUED = "Queued"
    PENDING = "Pending"
    RUNNING = "Running"
    MIGRATING = "Migrating"
    FROZEN = "Frozen"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class NodeRange(meta.Model):
    """A range of node numbers, both ends included (mosrun -jID1-ID2)."""

    first: int = Field(ge=1, description="First node number of the range.")
    last: int = Field(ge=1, description="Last node number of the range (inclusive).")

    __cel__: ClassVar[list[dict[str, str]]] = [
        {"rule": "self.first <= self.last", "message": "first must not exceed last"}
    ]


class Queue(meta.Model):
    """mosrun -q{pri}: wait in the cluster's queue, and the user's queue operations (mosq)."""

    priority: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PRIORITY,
        description="Queue priority, lower runs first (mosrun -q{pri}). Unset: the cluster's "
        "default (MosixCluster spec.queue.defaultPriority, normally 50).",
    )
    position: int | None = Field(
        default=None,
        description="Place within its priority group (mosq advance/retard). Unset: the job's "
        "creation time in milliseconds, so the queue is first come, first served.",
    )
    run_now: bool = Field(default=False, description="Release from the queue at once (mosq run).")


class CheckpointPolicy(meta.Model):
    """mosrun -C{base} -A{min} -N{max}: where and when checkpoints are written."""

    base: str | None = Field(
        default=None,
        min_length=1,
        description="Checkpoint file base name; sets are written as base.1, base.2, ... "
        "(mosrun -C). Unset: ckpt.{job}.",
    )
    interval_minutes: int | None = Field(
        default=None, ge=1, le=525600, description="Checkpoint every this many minutes (mosrun -A)."
    )
    max_sets: int | None = Field(
        default=None, ge=1, le=1000, description="Keep at most this many sets, then recycle the extensions (mosrun -N)."
    )


class FdRemap(meta.Model):
    """One mosrun -O{fd}={file} pair: on recovery, reopen this descriptor on another file."""

    fd: int = Field(ge=0, le=65535, description="The file descriptor number in the checkpoint.")
    path: str = Field(min_length=1, description="The file to open instead of the original one.")


class Recover(meta.Model):
    """mosrun -R{file} [-O...]: continue a program from a checkpoint."""

    from_checkpoint: str = Field(
        alias="from", min_length=1, description="The checkpoint set to recover from, e.g. /tmp/ckpt.1."
    )
    fd_remap: list[FdRemap] = Field(
        default_factory=list, max_length=64, description="Descriptors to reopen on other files (mosrun -O)."
    )

    __cel__: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "!has(self.fdRemap) || self.fdRemap.all(a, self.fdRemap.exists_one(b, b.fd == a.fd))",
            "message": "each fd may be remapped once",
        }
    ]


class CommandSet(meta.Model):
    """mosrun -S{max} commands-file: many command lines, at most max running at once."""

    max_running: int = Field(ge=1, le=100000, description="At most this many lines run at once (-S{max}).")
    lines: list[list[str]] = Field(
        min_length=1, description="The command lines, in the order they start; each a program and its arguments."
    )


class MigrationRequest(meta.Model):
    """migrate {id} {node|home}: a one-shot request, carried out once per serial."""

    to: str = Field(
        pattern=NODE_REF_PATTERN.replace("^(", "^(home|"),
        description="Target node: number, IP address, name, or 'home'.",
    )
    serial: int = Field(
        ge=1, description="Raised by each request; done when status.observedMigrationSerial reaches it."
    )
    method: MigrationMethod = Field(
        default=MigrationMethod.AUTO,
        description="Auto (post-copy for large jobs), StopAndCopy or PostCopy (migrate --postcopy/--stop-and-copy).",
    )


class CheckpointRequest(meta.Model):
    """migrate {id} checkpoint|checkstop|exit: a one-shot checkpoint request."""

    after: AfterCheckpoint = Field(
        default=AfterCheckpoint.CONTINUE, description="Continue (checkpoint), Stop (checkstop) or Exit (exit)."
    )
    serial: int = Field(
        ge=1, description="Raised by each request; done when status.observedCheckpointSerial reaches it."
    )


class ProcessRequest(meta.Model):
    """migrate {id}.{index} ...: the user's requests to one process of a gang (-P) or commands file (-S)."""

    migration: MigrationRequest | None = Field(
        default=None, description="migrate {id}.{index} {node|home}: move this process alone."
    )
    frozen: bool = Field(
        default=False, description="Keep this process frozen (migrate {id}.{index} freeze; false: continue)."
    )


class SignalRequest(meta.Model):
    """moskillall: deliver a signal to the job's processes, once per serial."""

    signal: str = Field(
        pattern=r"^(SIG)?[A-Z0-9+-]+$|^[0-9]{1,2}$", description="Signal name or number (default TERM)."
    )
    serial: int = Field(ge=1, description="Raised by each request; done when status.observedSignalSerial reaches it.")


class MosixJobSpec(meta.Model):
    """What the user asked for: the program, and mosrun's options."""

    command: list[str] = Field(default_factory=list, description="The program and its arguments.")
    image: str = Field(
        default=DEFAULT_IMAGE,
        min_length=1,
        description="OCI image the program runs in (a registry reference or oci: layout).",
    )
    user: str | None = Field(default=None, description="Who submitted the job (mosq USER), set by mosrun.")
    working_dir: str | None = Field(
        default=None,
        description="The job's working directory on its home node (mosrun -E/dir, -M/dir; "
        "default: where mosrun was started).",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    home_node: str | None = Field(
        default=None,
        pattern=NODE_REF_PATTERN,
        description="The home node: where the job's I/O lives (default: the submitting node).",
    )
    placement: Placement = Field(
        default=Placement.HOME, description="Where to start: Home (-h), Best (-b), Node (-r/-n/-IP), Range (-j)."
    )
    node: str | None = Field(
        default=None,
        pattern=NODE_REF_PATTERN,
        description="With placement Node: a node number (-3), IP (-132.65.174.1) or name (-rmos1).",
    )
    node_ranges: list[NodeRange] = Field(
        default_factory=list, max_length=64, description="With placement Range: node-number ranges (-j1-4,7-9)."
    )
    grid_class: int = Field(
        default=0, ge=0, le=65535, description="Grid class (-G{class}); above 0 the job may migrate to other clusters."
    )
    memory_mb: int | None = Field(
        default=None,
        ge=1,
        le=16777216,
        description="Most memory the job needs, in MB (-m); nodes with less free are avoided.",
    )
    job_id: int = Field(
        default=0,
        ge=0,
        le=2147483647,
        description="User's job id (-J); jobs sharing it are listed, killed and migrated together.",
    )
    queue: Queue | None = Field(default=None, description="Wait in the cluster queue (-q, -q{pri}).")
    parallel: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Gang size (-P{n}): released from the queue only when n slots are free at once.",
    )
    commands: CommandSet | None = Field(default=None, description="Run the lines of a commands file (-S{max} file).")
    batch: BatchMode | None = Field(default=None, description="Batch job: Native (-E) or Mosix (-M).")
    unsupported: Unsupported = Field(
        default=Unsupported.ABORT, description="When checkpointing is impossible: Abort, Continue (-e) or Warn (-w)."
    )
    checkpoint: CheckpointPolicy | None = Field(default=None, description="Checkpoint files and schedule (-C, -A, -N).")
    recover: Recover | None = Field(default=None, description="Recover from a checkpoint (-R{file}, -O).")
    private_dirs: list[str] = Field(
        default_factory=list, description="Temporary private directories (-X): local to the container, migrate with it."
    )
    host_time: bool = Field(default=False, description="Take the time from the hosting node, not home (-t).")
    stay_on_syscalls: bool = Field(
        default=False, description="Never bring the job home because of its system calls or I/O (-c)."
    )
    io_decay: int | None = Field(
        default=None,
        ge=0,
        le=10000,
        description="Per 10000: how much of its I/O statistics survive each second (-d{n}; -d is 0).",
    )
    locked: bool = Field(default=False, description="Never migrate automatically (-L).")
    stdin: bool = Field(default=False, description="Forward standard input to the job (-i).")
    due: str | None = Field(default=None, description="When the user expects the job to complete (mosps DUE).")
    frozen: bool = Field(default=False, description="Keep the job frozen (migrate freeze; false: migrate continue).")
    migration: MigrationRequest | None = Field(default=None, description="A migrate {id} {node|home} request.")
    checkpoint_request: CheckpointRequest | None = Field(
        default=None, description="A migrate checkpoint/checkstop/exit request."
    )
    signal: SignalRequest | None = Field(default=None, description="A moskillall request.")
    processes: dict[str, ProcessRequest] = Field(
        default_factory=dict,
        max_length=1000,
        description="With -P or -S: requests to single processes, by the index status.processes gives them "
        "(migrate {id}.{index} {node|home|freeze|continue}).",
    )

    __cel__: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "(has(self.command) && size(self.command) > 0) || has(self.commands) || has(self.recover)",
            "message": "a job needs a command, a commands file (-S) or a checkpoint to recover from (-R)",
        },
        {
            "rule": "!(has(self.command) && size(self.command) > 0 && has(self.commands))",
            "message": "command and commands (-S) are exclusive",
            "fieldPath": ".commands",
        },
        {
            "rule": "self.placement != 'Node' || has(self.node)",
            "message": "placement Node needs node (-r{host}, -{n} or -{IP})",
            "fieldPath": ".node",
        },
        {
            "rule": "self.placement == 'Node' || !has(self.node)",
            "message": "node is only for placement Node",
            "fieldPath": ".node",
        },
        {
            "rule": "self.placement != 'Range' || (has(self.nodeRanges) && size(self.nodeRanges) > 0)",
            "message": "placement Range needs nodeRanges (-j)",
            "fieldPath": ".nodeRanges",
        },
        {
            "rule": "!has(self.parallel) || self.parallel == 1 || has(self.queue)",
            "message": "parallel (-P) jobs must be queued (-q)",
            "fieldPath": ".parallel",
        },
        {
            "rule": "!has(self.processes) || size(self.processes) == 0 || (has(self.parallel) && self.parallel > 1)"
            " || has(self.commands)",
            "message": "processes (requests to single processes) are only for a gang (-P) or a commands file (-S)",
            "fieldPath": ".processes",
        },
        {
            "rule": "!has(self.processes) || self.processes.all(i, i.matches('^(0|[1-9][0-9]{0,5})$'))",
            "message": "processes are keyed by their index: 0, 1, 2, ...",
            "fieldPath": ".processes",
        },
        {
            "rule": "!has(self.processes) || self.processes.all(i, !i.matches('^[0-9]{1,6}$') || "
            "int(i) < (has(self.commands) ? size(self.commands.lines) : has(self.parallel) ? self.parallel : 1))",
            "message": "no such process: the index must be below the gang's size (-P) or the number of lines (-S)",
            "fieldPath": ".processes",
        },
        {
            "rule": "!(has(self.batch) && self.batch == 'Native' && self.gridClass > 0)",
            "message": "a native batch job (-E) cannot go to the grid (-G)",
            "fieldPath": ".gridClass",
        },
        {
            "rule": "!(has(self.recover) && has(self.command) && size(self.command) > 0)",
            "message": "recover (-R) continues the checkpointed program; give no command with it",
            "fieldPath": ".command",
        },
    ]


class CheckpointSet(meta.Model):
    """One checkpoint written by an agent."""

    name: str = Field(description="base.N")
    node: str | None = Field(
        default=None, description="Node whose agent holds the images; unset: on storage every node reads."
    )
    time: str = Field(description="When it was taken (RFC 3339).")
    size_bytes: int = Field(default=0, ge=0, description="Size of the images.")


class ProcessStatus(meta.Model):
    """One process of a gang (-P n) or one line of a commands file (-S): a unit that runs, freezes and
    is placed on its own node. Keyed by its index in `status.processes` so each agent merge-patches
    only its own entries (a list would be replaced whole by concurrent writers)."""

    node: str | None = Field(default=None, description="mosps WHERE: the node that runs this process.")
    phase: Phase = Field(default=Phase.PENDING, description="Pending, Running, Frozen, Succeeded or Failed.")
    orig_pid: int | None = Field(default=None, description="mosps ORIGPID: its process id where it started.")
    frozen: FreezeReason | None = Field(default=None, description="mosps FRZ: why this process is frozen.")
    migrations: int = Field(default=0, ge=0, description="mosps NMIGS: this process's migrations so far.")
    exit_code: int | None = Field(default=None, description="Its exit code once it finished.")
    start_time: str | None = Field(default=None, description="When it started.")
    completion_time: str | None = Field(default=None, description="When it finished.")
    observed_signal_serial: int = Field(default=0, description="Last moskillall request carried out on it.")
    observed_checkpoint_serial: int = Field(default=0, description="Last checkpoint request carried out on it.")
    observed_migration_serial: int = Field(
        default=0, description="Last migrate {id}.{index} request (spec.processes) turned into a targetNode."
    )
    checkpoint: str | None = Field(default=None, description="Its newest checkpoint set.")
    checkpoints: list[CheckpointSet] = Field(
        default_factory=list, description="Its checkpoint sets, newest last (recovery restarts from the newest)."
    )
    target_node: str | None = Field(
        default=None, description="Where the control plane wants this process; its agent migrates it, then clears it."
    )
    restore_from: str | None = Field(
        default=None, description="Checkpoint set its next start restores from (recovery after its node died)."
    )
    last_migration_time: str | None = Field(default=None, description="When this process last moved.")
    last_freeze_ms: float | None = Field(default=None, description="How long its last migration froze it.")
    message: str | None = Field(default=None, description="The last thing worth saying about it.")


class MosixJobStatus(meta.Model):
    """What the control plane and the agents observed; the mosps and mosq columns."""

    phase: Phase = Field(default=Phase.QUEUED, description="Where the job is in its life.")
    node: str | None = Field(default=None, description="mosps WHERE: the node running the job now.")
    home_node: str | None = Field(default=None, description="mosps FROM: the job's home node.")
    where: str | None = Field(default=None, description="mosps WHERE as shown: a node, queue, or a special state.")
    orig_pid: int | None = Field(default=None, description="mosps ORIGPID: the process id on the home node.")
    class_name: str | None = Field(default=None, description="mosps CLASS: local, grid class, batch or native.")
    frozen: FreezeReason | None = Field(default=None, description="mosps FRZ: why the job is frozen, if it is.")
    migratable: bool = Field(default=True, description="False when checkpointing cannot carry the job (FRZ N/A).")
    unsupported_reason: str | None = Field(default=None, description="Why the job cannot be checkpointed.")
    migrations: int = Field(default=0, ge=0, description="mosps NMIGS: migrations so far.")
    priority: int | None = Field(default=None, description="The queue priority in force (mosq PRI).")
    start_time: str | None = Field(default=None, description="When the job left the queue and started.")
    completion_time: str | None = Field(default=None, description="When the job finished.")
    exit_code: int | None = Field(default=None, description="The program's exit code.")
    message: str | None = Field(default=None, description="The last thing worth saying about the job.")
    target_node: str | None = Field(
        default=None, description="Where the control plane wants the job; its agent migrates it there, then clears it."
    )
    restore_from: str | None = Field(
        default=None, description="Checkpoint set the next start restores from (recovery after a node died)."
    )
    observed_migration_serial: int = Field(default=0, description="Last migrate request carried out.")
    observed_checkpoint_serial: int = Field(default=0, description="Last checkpoint request carried out.")
    observed_signal_serial: int = Field(default=0, description="Last moskillall request carried out.")
    last_migration_time: str | None = Field(default=None, description="When the job last moved.")
    last_freeze_ms: float | None = Field(default=None, description="How long the last migration froze the job.")
    checkpoints: list[CheckpointSet] = Field(default_factory=list, description="Checkpoint sets, newest last.")
    io_rate_kbps: float | None = Field(
        default=None,
        ge=0,
        description="The job's I/O rate in KB/s (bytes its processes read and wrote, decayed by -d), as its agent "
        "measured it; the policy keeps an I/O-heavy job at home unless -c.",
    )
    remote_io_kbps: float | None = Field(
        default=None,
        ge=0,
        description="The KB/s that crossed the link to home while the job ran away (MOSIX's remote system calls): "
        "its output and its working directory's traffic; the policy weighs this, not ioRateKbps, for a job away.",
    )
    processes: dict[str, ProcessStatus] = Field(
        default_factory=dict,
        description="With -P or -S: each process by its index (a gang member 0..n-1, or the 0-based line of the "
        "commands file); the job-level fields summarize them.",
    )
    running_lines: int | None = Field(default=None, description="With -S: command lines running now.")
    finished_lines: int | None = Field(default=None, description="With -S: command lines finished.")
    conditions: list[meta.Condition] = Field(default_factory=list, description="Observed facts with their reasons.")


def multi(spec: MosixJobSpec) -> bool:
    """True when the job runs several processes (a -P gang or a -S commands file), each its own unit."""
    return (spec.parallel or 1) > 1 or spec.commands is not None


def process_args(spec: MosixJobSpec, index: int) -> list[str]:
    """What process `index` runs: its line of the commands file, or the gang's command."""
    if spec.commands is not None:
        return spec.commands.lines[index]
    return spec.command


def where(phase: Phase, node: str | None) -> str:
    """mosps WHERE as stored for `kubectl get mj`: the node, or the special state the job is in."""
    if phase in (Phase.QUEUED, Phase.PENDING) and node is None:
        return "queue" if phase == Phase.QUEUED else "starting"
    if phase.finished:
        return "done" if phase == Phase.SUCCEEDED else "failed"
    if phase == Phase.MIGRATING:
        return "migrating"
    return node or "-"


class MosixJob(meta.Resource):
    """A MOSIX job: one mosrun, namespaced."""

    KIND: ClassVar[str] = "MosixJob"
    PLURAL: ClassVar[str] = "mosixjobs"
    SINGULAR: ClassVar[str] = "mosixjob"
    SHORT_NAMES: ClassVar[list[str]] = ["mj"]
    NAMESPACED: ClassVar[bool] = True

    kind: str = Field(default="MosixJob")
    spec: MosixJobSpec
    status: MosixJobStatus = Field(default_factory=MosixJobStatus)
