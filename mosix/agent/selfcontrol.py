"""What a job asks of MOSIX from inside, by writing its /run/mosix files, turned into the requests the
commands make (`migrate {id} {node|home|checkpoint}`, mosrun -L, -m): patches of the job's spec, so the
control plane, `mosps` and the policy see them exactly as if a user had typed the command.

A bad write (not a number, an unknown node, a move while locked) changes nothing: it comes back as a
message for the job's status, never as an exception that would stop the agent's pass.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from mosix.agent import procfiles
from mosix.api import job
from mosix.client import client, store

MAX_MB = 16777216  # MosixJobSpec.memory_mb's bound
# The only spec fields the agent writes; the chart's admission policy keeps every other one from it.
SPEC_FIELDS = ("locked", "memoryMb", "migration", "checkpointRequest")


@dataclasses.dataclass
class Outcome:
    """The spec patch to make, whether to clear the job's statistics, and what was refused (messages)."""

    spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    clear: bool = False
    refused: list[str] = dataclasses.field(default_factory=list)

    @property
    def locked(self) -> bool | None:
        """The lock state asked for, if the writes changed it."""
        value = self.spec.get("locked")
        return None if value is None else bool(value)

    @property
    def needmem(self) -> int | None:
        """The memory need asked for (0: none), if the writes changed it."""
        if "memoryMb" not in self.spec:
            return None
        return int(self.spec["memoryMb"] or 0)


def _serial(current: job.MigrationRequest | job.CheckpointRequest | None) -> int:
    return (current.serial if current is not None else 0) + 1


def outcome(api: client.Client, j: job.MosixJob, writes: list[procfiles.Write]) -> Outcome:
    """The requests the job's writes make, in the order taken (lock first, so a write of 1 to lock then a
    node to migrate refuses the move, as `migrate` refuses it for a locked job)."""
    out = Outcome()
    locked = j.spec.locked
    for w in writes:
        where = f"{procfiles.MOUNT_POINT}/{w.file}"
        if w.file == procfiles.LOCK:
            if w.value not in ("0", "1"):
                out.refused.append(f"{where}: write 1 to lock the job to its node or 0 to unlock it, not {w.value!r}")
                continue
            locked = w.value == "1"
            out.spec["locked"] = locked
        elif w.file == procfiles.NEEDMEM:
            if not w.value.isdigit() or int(w.value) > MAX_MB:
                out.refused.append(f"{where}: write the memory the job needs in MB (0 to {MAX_MB}), not {w.value!r}")
                continue
            out.spec["memoryMb"] = int(w.value) or None
        elif w.file == procfiles.MIGRATE:
            refusal = _migrate(api, j, w.value, locked, out)
            if refusal:
                out.refused.append(f"{where}: {refusal}")
        elif w.file == procfiles.CHECKPOINT:
            if w.value != "1":
                out.refused.append(f"{where}: write 1 to checkpoint the job, not {w.value!r}")
                continue
            out.spec["checkpointRequest"] = {
                "after": job.AfterCheckpoint.CONTINUE.value,
                "serial": _serial(j.spec.checkpoint_request),
            }
        elif w.file == procfiles.CLEAR:
            out.clear = True
    return out


def _migrate(api: client.Client, j: job.MosixJob, ref: str, locked: bool, out: Outcome) -> str | None:
    """The migration request for `ref` (a node's number, address or name, or home) into out; or why not."""
    if locked:
        return f"the job is locked to its node (write 0 to {procfiles.MOUNT_POINT}/lock first): not moving to {ref!r}"
    if j.spec.batch == job.BatchMode.NATIVE:
        return "a native Linux batch job (-E) cannot migrate"
    if not j.status.migratable:
        return f"the job cannot migrate: {j.status.unsupported_reason or 'unsupported'}"
    if ref.lower() == "home":
        to = "home"
    elif not ref or not re.match(job.NODE_REF_PATTERN, ref):
        return f"write a node number, IP address, host name or home, not {ref!r}"
    else:
        try:
            to = api.get_node(ref).name
        except store.NotFound as e:
            return str(e)
    out.spec["migration"] = {"to": to, "serial": _serial(j.spec.migration)}
    return None
