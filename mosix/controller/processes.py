"""Jobs of several processes (-P n gangs, -S commands files): admissions into per-process entries, and
the job-level summary (phase, WHERE, exit code, line counts) that `kubectl get mj` and mosq show.

Each process is its own unit in `status.processes`, keyed by index: the control plane adds entries
(node + Pending) when the policy admits them, and sets a process's `targetNode` and `frozen` for the
policy and for the user's requests to that process (`spec.processes`); the agent on that node starts,
freezes, migrates and finishes them. The job succeeds when every process did (and, with -S, every
line ran); otherwise it fails with the exit code of the first process that failed, naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mosix.api import job, meta
from mosix.policy import decisions, placement, snapshot

Patch = dict[str, Any]


def admitted(a: decisions.Admission, j: job.MosixJob) -> Patch:
    """New processes on the admission's nodes, one each; indexes continue after those already started."""
    first = a.first_line if j.spec.commands is not None else len(j.status.processes)
    entries = {str(first + k): {"node": n, "phase": job.Phase.PENDING.value} for k, n in enumerate(a.nodes)}
    patch: Patch = {"processes": entries, "message": None}
    if not j.status.processes:  # the job's first processes: it leaves the queue
        home = j.status.home_node or j.spec.home_node or a.nodes[0]
        patch |= {"phase": job.Phase.PENDING.value, "node": a.nodes[0], "homeNode": home,
                  "where": a.nodes[0]}
    return patch


def total(j: job.MosixJob) -> int:
    """How many processes the job runs in all: the gang's n, or the number of lines."""
    if j.spec.commands is not None:
        return len(j.spec.commands.lines)
    return j.spec.parallel or 1


def _first_failure(procs: dict[str, job.ProcessStatus]) -> tuple[str, job.ProcessStatus] | None:
    failed = [(i, p) for i, p in procs.items() if p.phase == job.Phase.FAILED]
    return min(failed, key=lambda ip: (meta.seconds(ip[1].completion_time) or 0.0, int(ip[0])), default=None)


def summary(j: job.MosixJob) -> Patch:
    """The job-level fields as its processes make them; only what changed. Empty before any started."""
    st, procs = j.status, j.status.processes
    if not procs or st.phase.finished:
        return {}
    done = [p for p in procs.values() if p.phase.finished]
    live = [p for p in procs.values() if not p.phase.finished]
    want: Patch = {}
    if j.spec.commands is not None:
        want |= {"runningLines": len(live), "finishedLines": len(done)}
    nodes = sorted({p.node for p in live if p.node}, key=lambda n: (len(n), n))
    if len(done) == total(j):
        failure = _first_failure(procs)
        code = 0 if failure is None else failure[1].exit_code if failure[1].exit_code is not None else 1
        phase = job.Phase.SUCCEEDED if failure is None else job.Phase.FAILED
        ended = max((p.completion_time for p in done if p.completion_time), default=None) or meta.now_rfc3339()
        want |= {"phase": phase.value, "where": job.where(phase, None), "exitCode": code,
                 "completionTime": st.completion_time or ended}
        if failure is not None:
            text = failure[1].message or f"exit code {code}"
            want["message"] = f"process {failure[0]} failed on {failure[1].node}: {text}"
    elif live and all(p.phase == job.Phase.FROZEN for p in live):
        want |= {"phase": job.Phase.FROZEN.value}
    elif live and all(p.phase == job.Phase.STOPPED for p in live):
        want |= {"phase": job.Phase.STOPPED.value}
    elif any(p.phase != job.Phase.PENDING for p in procs.values()):  # one started (maybe already ended)
        want |= {"phase": job.Phase.RUNNING.value, "where": ",".join(nodes) if nodes else st.where}
        if nodes:
            want["node"] = nodes[0]
        if st.start_time is None:
            want["startTime"] = min((p.start_time for p in procs.values() if p.start_time), default=None)
    if live and j.spec.checkpoint_request is not None:  # a checkpoint request is done once every live process did it
        observed = min(p.observed_checkpoint_serial for p in live)
        if observed > st.observed_checkpoint_serial:
            want["observedCheckpointSerial"] = observed
    current = j.status.model_dump(by_alias=True, mode="json")
    return {k: v for k, v in want.items() if current.get(k) != v and v is not None}


@dataclasses.dataclass(frozen=True)
class Request:
    """The desired state one request in `spec.processes` makes of process `index`, and its Event (if any)."""

    index: str
    patch: Patch
    reason: str | None = None
    message: str = ""
    warning: bool = False


def requests(j: job.MosixJob, nodes: dict[str, snapshot.NodeView]) -> list[Request]:
    """migrate {id}.{index} {node|home|freeze|continue} (spec.processes) as the process's desired status.

    A move is done once per serial (`observedMigrationSerial` on the process); a request for a process
    not started yet waits until it runs; a process that finished meanwhile only marks the request done."""
    out: list[Request] = []
    st = j.status
    for index, want in sorted(j.spec.processes.items(), key=lambda iw: int(iw[0])):
        proc = st.processes.get(index)
        if proc is None:
            continue
        req = want.migration
        if req is not None and req.serial > proc.observed_migration_serial and proc.phase != job.Phase.PENDING:
            patch: Patch = {"observedMigrationSerial": req.serial}
            to = st.home_node or j.spec.home_node if req.to == "home" else req.to
            live = proc.phase in (job.Phase.RUNNING, job.Phase.FROZEN)
            refused = placement.arrival_refused(nodes.get(to), st.home_node or j.spec.home_node) if to else None
            if not st.migratable and live:
                why = f"cannot migrate: {st.unsupported_reason or 'unsupported'}"
                out.append(Request(index, patch | {"message": why}, "MigrationRefused",
                                   f"process {index} {why}", True))
            elif live and to != proc.node and refused:
                out.append(Request(index, patch | {"message": f"cannot migrate: {refused}"}, "MigrationRefused",
                                   f"process {index} cannot migrate: {refused}", True))
            elif live and to and to != proc.node:
                out.append(Request(index, patch | {"targetNode": to}, "MigrationRequested",
                                   f"migrate process {index} to {to} (requested)"))
            else:
                out.append(Request(index, patch))
        if want.frozen and proc.frozen is None and proc.phase == job.Phase.RUNNING and st.migratable:
            out.append(Request(index, {"frozen": job.FreezeReason.MANUAL.value}, "FreezeRequested",
                               f"freeze process {index} (requested)"))
        if not want.frozen and proc.frozen == job.FreezeReason.MANUAL:
            out.append(Request(index, {"frozen": None}, "ContinueRequested", f"continue process {index} (requested)"))
    return out
