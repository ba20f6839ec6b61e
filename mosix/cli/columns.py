"""How a job reads in mosps and mosq: the tutorial's column values, computed from one MosixJob."""

from __future__ import annotations

import dataclasses
import shlex

from mosix.api import job, node
from mosix.client import client

FRZ = {job.FreezeReason.AUTO: "A", job.FreezeReason.EXPELLED: "E", job.FreezeReason.MANUAL: "M"}


@dataclasses.dataclass(frozen=True)
class NodeNames:
    """How to print a node: host name (default, mosps -h), IP (-I), or its last component (-M)."""

    nodes: tuple[node.MosixNode, ...]
    here: str | None
    style: str = "host"  # host | ip | short

    def _find(self, ref: str) -> node.MosixNode | None:
        for n in self.nodes:
            if ref in (n.name, str(n.spec.number), n.spec.address, n.spec.hostname):
                return n
        return None

    def is_here(self, ref: str | None) -> bool:
        if ref is None or self.here is None:
            return False
        mine, theirs = self._find(self.here), self._find(ref)
        return ref == self.here or (mine is not None and mine is theirs)

    def show(self, ref: str | None) -> str:
        if ref is None:
            return "-"
        if self.is_here(ref):
            return "here"
        found = self._find(ref)
        if found is None:
            return ref
        if self.style == "ip":
            return found.spec.address
        host = found.spec.hostname or found.name
        return host.split(".")[0] if self.style == "short" else host


def command_line(j: job.MosixJob, process: str | None = None) -> str:
    """The mosrun line that made the job (CMD / COMMAND); for one line of a -S file, that line."""
    if process is not None and j.spec.commands is not None:
        return shlex.join(job.process_args(j.spec, int(process)))
    line = j.metadata.annotations.get(client.COMMAND_LINE_ANNOTATION)
    if line:
        return line
    if j.spec.commands is not None:
        return f"mosrun -S{j.spec.commands.max_running} ({len(j.spec.commands.lines)} lines)"
    if j.spec.recover is not None:
        return f"mosrun -R{j.spec.recover.from_checkpoint}"
    return shlex.join(["mosrun", *j.spec.command])


def is_waiting(j: job.MosixJob) -> bool:
    """Still in the queue: queued and not yet released."""
    return j.spec.queue is not None and j.status.phase == job.Phase.QUEUED


def class_name(j: job.MosixJob) -> str:
    """mosps CLASS: local (class 0), the grid class, batch (-M) or native (-E)."""
    if j.status.class_name:
        return j.status.class_name
    if j.spec.batch == job.BatchMode.NATIVE:
        return "native"
    if j.spec.batch == job.BatchMode.MOSIX:
        return "batch"
    return "local" if j.spec.grid_class == 0 else str(j.spec.grid_class)


def frz(j: job.MosixJob, process: job.ProcessStatus | None = None) -> str:
    """mosps FRZ: A/E/M when frozen, - when not, N/A when the job cannot be frozen (or is queued);
    for one process of a gang or -S file, its own freeze or the job's."""
    if is_waiting(j) or not j.status.migratable or j.spec.batch == job.BatchMode.NATIVE:
        return "N/A"
    frozen = (process.frozen if process is not None else None) or j.status.frozen
    return FRZ[frozen] if frozen else "-"


def process_where(p: job.ProcessStatus, names: NodeNames) -> str:
    """mosps WHERE of one process of a gang or -S file: its node, or 'starting' before it runs."""
    if p.phase == job.Phase.PENDING:
        return "starting"
    return names.show(p.node)


def where(j: job.MosixJob, names: NodeNames) -> str:
    """mosps WHERE: a node, or the special state the job is in."""
    if is_waiting(j) or (j.status.phase == job.Phase.QUEUED and j.status.node is None):
        return "queue"
    if j.status.phase.finished:
        return "done" if j.status.phase == job.Phase.SUCCEEDED else "failed"
    if j.status.phase == job.Phase.MIGRATING:
        return "migrating"
    return names.show(j.status.node)


def home(j: job.MosixJob, names: NodeNames) -> str:
    """mosps FROM: the home node ('here' on the home node itself)."""
    return names.show(j.status.home_node or j.spec.home_node or names.here)


def priority(j: job.MosixJob, default: int) -> int:
    """The queue priority in force: the job's own, else the cluster's default."""
    if j.spec.queue is not None and j.spec.queue.priority is not None:
        return j.spec.queue.priority
    return default
