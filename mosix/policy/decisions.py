"""What the policy asks the control plane to do: frozen records naming jobs and nodes.

Reasons are `str` enums so they go straight into Kubernetes Events, conditions and metrics.
"""

from __future__ import annotations

import dataclasses
import enum

from mosix.policy import snapshot


class AdmitReason(enum.StrEnum):
    """Why a job starts now."""

    QUEUE = "Queue"  # its turn in the queue came and the slots were free
    RUN_NOW = "RunNow"  # mosq run: released regardless of order and load
    DIRECT = "Direct"  # not queued (no -q): mosrun starts it at once
    LINES = "Lines"  # more lines of a -S commands file may start
    RESTART = "Restart"  # its node died before it started: start it elsewhere


class WaitReason(enum.StrEnum):
    """Why a job that could start did not."""

    NO_SLOTS = "NoSlots"
    NO_MEMORY = "NoMemory"  # no eligible node has the free memory it needs (-m)
    NO_NODE = "NoNode"  # the requested node (or range) is unknown, dead or not taking jobs
    GANG = "GangIncomplete"  # -P n: fewer than n slots free at once
    MAX_RUNNING = "MaxRunning"  # the cluster's cap on jobs running from the queue


class MigrationReason(enum.StrEnum):
    """Why a running job moves."""

    LOAD = "Load"  # a faster or less loaded node gives it more CPU
    MEMORY = "Memory"  # its node is running out of memory (ushering)
    EXPELLED = "Expelled"  # its node expels guests
    IO = "IO"  # brought home: its I/O would cost more away than the move


class FailReason(enum.StrEnum):
    """Why a job ends without finishing."""

    NO_CHECKPOINT = "NodeDiedNoCheckpoint"
    CHECKPOINT_LOST = "NodeDiedCheckpointLost"


@dataclasses.dataclass(frozen=True, slots=True)
class Admission:
    """Start `job` (or more of its processes) on `nodes`: one node per process.

    A gang (-P n) gets n nodes at once; a -S job gets one node per line, the first of which
    is line `first_line` (0-based).
    """

    job: str
    nodes: tuple[str, ...]
    reason: AdmitReason
    first_line: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """`job` stays where it is this round, for `reason`."""

    job: str
    reason: WaitReason


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """Move running `job` from `source` to `target`."""

    job: str
    source: str
    target: str
    reason: MigrationReason


@dataclasses.dataclass(frozen=True, slots=True)
class Freeze:
    """Freeze `job` where it is (`node`): its memory image goes to disk."""

    job: str
    node: str
    reason: snapshot.FreezeReason


@dataclasses.dataclass(frozen=True, slots=True)
class Continue:
    """Restore frozen `job` on `node`, lifting a freeze for `reason`."""

    job: str
    node: str
    reason: snapshot.FreezeReason


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    """Restart `job`, lost with dead node `source`, from `checkpoint` on `target` (None: a process
    of a gang or commands file that had not started yet starts afresh)."""

    job: str
    checkpoint: str | None
    source: str
    target: str


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """`job` cannot go on."""

    job: str
    reason: FailReason
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Decisions:
    """One round's decisions; each job appears in at most one of them."""

    admissions: tuple[Admission, ...] = ()
    migrations: tuple[Migration, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    continues: tuple[Continue, ...] = ()
    recoveries: tuple[Recovery, ...] = ()
    failures: tuple[Failure, ...] = ()
    waits: tuple[Wait, ...] = ()
