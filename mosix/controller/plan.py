"""Decisions and user requests → status patches for the agents to carry out, plus one Event each.

The contract with the agents (level-triggered, like a kubelet): the control plane writes, on a
job's status, `node` + phase Pending (start it there; from `restoreFrom` when set), `targetNode`
(move it there), `frozen` (freeze it for that reason; cleared: continue it), or phase Failed.
The agent on `status.node` carries that out and writes back what it observed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from mosix.api import job
from mosix.controller import processes
from mosix.policy import decisions, placement, snapshot

Patch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Event:
    """One Kubernetes-style Event about a job."""

    job: str
    reason: str
    message: str
    warning: bool = False


@dataclasses.dataclass
class Plan:
    """Status patches by job name, and the events explaining them."""

    patches: dict[str, Patch] = dataclasses.field(default_factory=dict)
    events: list[Event] = dataclasses.field(default_factory=list)

    def add(self, name: str, patch: Patch, event: Event | None = None) -> None:
        """Adds to the job's patch; per-process entries merge (several processes may change in a round)."""
        mine = self.patches.setdefault(name, {})
        procs = {**mine.get("processes", {})}
        for index, fields in patch.get("processes", {}).items():
            procs[index] = {**procs.get(index, {}), **fields}
        mine.update(patch)
        if procs:
            mine["processes"] = procs
        if event is not None:
            self.events.append(event)


def requests(jobs: dict[str, job.MosixJob], plan: Plan, nodes: dict[str, snapshot.NodeView]) -> None:
    """The user's migrate/freeze/continue requests (spec) turned into desired state (status), by job key;
    a move the target node's policy refuses (`placement.arrival_refused`) is refused with its reason."""
    for key, j in jobs.items():
        s, st = j.spec, j.status
        if st.phase.finished:
            continue
        req = s.migration
        if req is not None and req.serial > st.observed_migration_serial:
            patch: Patch = {"observedMigrationSerial": req.serial}
            to = st.home_node or s.home_node if req.to == "home" else req.to
            if job.multi(s):  # a gang or commands file moves process by process (spec.processes)
                plan.add(key, patch, Event(key, "MigrationRefused", "migrate: a job of several processes "
                                                                    "moves process by process ({id}.{index})",
                                           warning=True))
            elif not st.migratable:
                why = f"cannot migrate: {st.unsupported_reason or 'unsupported'}"
                plan.add(key, patch | {"message": why}, Event(key, "MigrationRefused", why, warning=True))
            elif to and to != st.node and (refused := placement.arrival_refused(nodes.get(to), st.home_node
                                                                               or s.home_node)):
                why = f"cannot migrate: {refused}"
                plan.add(key, patch | {"message": why}, Event(key, "MigrationRefused", why, warning=True))
            elif st.phase in (job.Phase.RUNNING, job.Phase.FROZEN) and to and to != st.node:
                patch["targetNode"] = to
                plan.add(key, patch, Event(key, "MigrationRequested", f"migrate to {to} (requested)"))
            else:
                plan.add(key, patch)
        if s.frozen and st.frozen is None and st.phase in (job.Phase.RUNNING, job.Phase.PENDING) and st.migratable:
            plan.add(key, {"frozen": job.FreezeReason.MANUAL.value},
                     Event(key, "FreezeRequested", "freeze (requested)"))
        if not s.frozen and st.frozen == job.FreezeReason.MANUAL:
            plan.add(key, {"frozen": None}, Event(key, "ContinueRequested", "continue (requested)"))
        if s.processes and job.multi(s):
            for r in processes.requests(j, nodes):
                plan.add(key, {"processes": {r.index: r.patch}},
                         None if r.reason is None else Event(key, r.reason, r.message, warning=r.warning))


def decided(result: decisions.Decisions, jobs: dict[str, job.MosixJob], plan: Plan) -> None:
    """The policy's decisions as desired state."""
    for a in result.admissions:
        j = jobs[a.job]
        if job.multi(j.spec):
            first, last = a.first_line + 1, a.first_line + len(a.nodes)
            what = ("processes" if j.spec.commands is None else
                    f"line {first}" if first == last else f"lines {first}-{last}")
            plan.add(a.job, processes.admitted(a, j),
                     Event(a.job, "Placed", f"{what} placed on {', '.join(a.nodes)} ({a.reason.value})"))
            continue
        home = j.status.home_node or j.spec.home_node or a.nodes[0]
        plan.add(a.job, {"phase": job.Phase.PENDING.value, "node": a.nodes[0], "homeNode": home,
                         "where": a.nodes[0], "message": None},
                 Event(a.job, "Placed", f"placed on {', '.join(a.nodes)} ({a.reason.value})"))
    for m in result.migrations:
        key, index = snapshot.split_unit(m.job)
        plan.add(key, _process(index, {"targetNode": m.target}),
                 Event(key, "MigrationDecided", f"migrate{_which(index)} {m.source} → {m.target} ({m.reason.value})"))
    for f in result.freezes:
        key, index = snapshot.split_unit(f.job)
        plan.add(key, _frozen(index, f.reason.value),
                 Event(key, "FreezeDecided", f"freeze{_which(index)} ({f.reason.value})"))
    for c in result.continues:
        key, index = snapshot.split_unit(c.job)
        plan.add(key, _frozen(index, None), Event(key, "ContinueDecided", f"continue{_which(index)} on {c.node}"))
    for r in result.recoveries:
        key, index = snapshot.split_unit(r.job)
        fields: Patch = {"phase": job.Phase.PENDING.value, "node": r.target, "restoreFrom": r.checkpoint,
                         "targetNode": None}
        plan.add(key, _process(index, fields | {"where": r.target} if index is None else fields),
                 Event(key, "Recovering", f"node {r.source} died; restarting{_which(index)} on {r.target} "
                                          f"{'afresh' if r.checkpoint is None else 'from ' + r.checkpoint}",
                       warning=True))
    for lost in result.failures:
        plan.add(lost.job, {"phase": job.Phase.FAILED.value, "where": "failed", "message": lost.message},
                 Event(lost.job, lost.reason.value, lost.message, warning=True))
    for w in result.waits:
        j = jobs[w.job]
        message = f"waiting: {w.reason.value}"
        if j.status.message != message:
            plan.add(w.job, {"message": message})


def _frozen(index: int | None, reason: str | None) -> Patch:
    """The freeze (reason) or continue (None) of a whole job, or of its process `index` alone."""
    return _process(index, {"frozen": reason})


def _process(index: int | None, fields: Patch) -> Patch:
    """`fields` for the whole job, or for its process `index` alone."""
    return fields if index is None else {"processes": {str(index): fields}}


def _which(index: int | None) -> str:
    return "" if index is None else f" process {index}"


def summaries(jobs: dict[str, job.MosixJob], plan: Plan) -> None:
    """Job-level status of gangs and commands files, summarized from their processes; one Event when
    such a job ends."""
    for key, j in jobs.items():
        if not job.multi(j.spec) or j.metadata.deletion_timestamp:
            continue
        patch = processes.summary(j)
        if not patch:
            continue
        phase = patch.get("phase")
        if phase == job.Phase.SUCCEEDED.value:
            plan.add(key, patch, Event(key, "Succeeded", f"all {processes.total(j)} processes succeeded"))
        elif phase == job.Phase.FAILED.value:
            plan.add(key, patch, Event(key, "Failed", str(patch.get("message")), warning=True))
        else:
            plan.add(key, patch)


def waiting(jobs: Iterable[tuple[str, job.MosixJob]], default: int, plan: Plan) -> None:
    """Waiting jobs' priority in force (the Pri printer column) and WHERE "queue", written only when changed.
    Their place in the queue is not stored: it shifts for every job behind one admitted, so it is computed
    where it is shown (mosq, from the policy core's `queue.order`)."""
    for name, j in jobs:
        pri = j.spec.queue.priority if j.spec.queue and j.spec.queue.priority is not None else default
        patch: Patch = {}
        if j.status.priority != pri:
            patch["priority"] = pri
        if j.status.where != "queue":
            patch["where"] = "queue"
        if patch:
            plan.add(name, patch)


def unsupported(jobs: dict[str, job.MosixJob], plan: Plan, now: str) -> None:
    """One warning Event per job an agent found CRIU cannot checkpoint; the condition Migratable=False
    it writes with it marks the event as given (level-triggered, so a restarted control plane says it once)."""
    for key, j in jobs.items():
        st = j.status
        if st.migratable or any(c.type == "Migratable" and c.status == "False" for c in st.conditions):
            continue
        reason = st.unsupported_reason or "unsupported"
        action = {job.Unsupported.ABORT: "killed, as MOSIX does (mosrun -e or -w continues without migration)",
                  job.Unsupported.CONTINUE: "continuing without migration (-e)",
                  job.Unsupported.WARN: "continuing without migration, warned on its stderr (-w)"}[j.spec.unsupported]
        condition = {"type": "Migratable", "status": "False", "reason": "UnsupportedFeature",
                     "message": reason, "lastTransitionTime": now}
        others = [c.wire() for c in st.conditions
                  if c.type != "Migratable"]
        plan.add(key, {"conditions": [*others, condition]},
                 Event(key, "UnsupportedFeature", f"cannot be checkpointed: {reason}; {action}", warning=True))
