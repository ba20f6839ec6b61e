"""What the handlers do, as plain synchronous calls over a `Client`: the handlers run them in threads.

Nothing here knows Kopf; it returns the Events to post and the reason to wait, the handlers act on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import pydantic

from mosix.api import cluster, job, meta, node
from mosix.client import client, store
from mosix.controller import round, views
from mosix.policy import snapshot

CLEANED = "Cleaned"
STATUS_FIELDS = ("nodes_alive", "nodes_dead", "queued", "running", "leader")


@dataclasses.dataclass(frozen=True)
class Notice:
    """One Kubernetes Event to post about an object (a minimal body: enough for involvedObject)."""

    body: dict[str, Any]
    reason: str
    message: str
    warning: bool = False


@dataclasses.dataclass(frozen=True)
class Report:
    """What one control round did, for the handler to post and log."""

    notices: list[Notice]
    conflicts: list[str]
    status: dict[str, Any]


def key(namespace: str | None, name: str | None) -> str:
    """A job's name for the operator's client, which spans namespaces."""
    return f"{namespace}/{name}"


def reference(j: job.MosixJob) -> dict[str, Any]:
    """The job as an Event's involvedObject needs it."""
    md = {"name": j.metadata.name, "namespace": j.metadata.namespace, "uid": j.metadata.uid}
    return {"apiVersion": meta.API_VERSION, "kind": job.MosixJob.KIND, "metadata": {k: v for k, v in md.items() if v}}


def _reference_of(name: str, jobs: Mapping[str, job.MosixJob]) -> dict[str, Any]:
    if name in jobs:
        return reference(jobs[name])
    namespace, _, short = name.rpartition("/")  # gone since: still say which it was
    md = {"name": short, "namespace": namespace} if namespace else {"name": short}
    return {"apiVersion": meta.API_VERSION, "kind": job.MosixJob.KIND, "metadata": md}


def ensure_cluster(api: client.Client) -> bool:
    """Creates the MosixCluster `default` with MOSIX's defaults when missing; True if it did."""
    try:
        api.store.get(cluster.MosixCluster, cluster.DEFAULT_NAME)
        return False
    except store.NotFound:
        pass
    try:
        api.store.create(cluster.MosixCluster, cluster.MosixCluster().wire())
    except store.Conflict:  # another replica was quicker
        return False
    return True


def release_cluster(api: client.Client, finalizer: str) -> bool:
    """Drops `finalizer` from the MosixCluster `default`; True if it was there.

    Kopf puts it there for the control-loop daemon (to stop it when the object goes) and never takes it
    off; with no operator left to stop anything, it would only hold a `kubectl delete mc default` forever.
    """
    try:
        body = api.store.get(cluster.MosixCluster, cluster.DEFAULT_NAME)
    except store.NotFound:
        return False
    held = list(body.get("metadata", {}).get("finalizers") or [])
    if finalizer not in held:
        return False
    api.store.patch(cluster.MosixCluster, cluster.DEFAULT_NAME,
                    {"metadata": {"finalizers": [f for f in held if f != finalizer]}})
    return True


def cluster_status(jobs: Mapping[str, job.MosixJob], nodes: list[node.MosixNode], conf: cluster.MosixCluster,
                   now: float, leader: str, *, cache: views.JobViews | None = None) -> dict[str, Any]:
    """The MosixCluster's status as the policy sees the cluster now (`cache`: the round's job views)."""
    snap = views.snapshot_of(dict(jobs), nodes, conf, now, cache)
    alive = sum(1 for n in snap.nodes if n.alive)
    states = [j.state for j in snap.jobs]
    return {
        "nodesAlive": alive,
        "nodesDead": len(snap.nodes) - alive,
        "queued": states.count(snapshot.JobState.QUEUED),
        "running": states.count(snapshot.JobState.RUNNING) + states.count(snapshot.JobState.MIGRATING),
        "leader": leader,
    }


def control_round(api: client.Client, leader: str, now: float | None = None) -> Report:
    """One round (`run_round`), then the Events it owes and the MosixCluster's status, read afresh."""
    now = time.time() if now is None else now
    outcome = round.run_round(api, now)
    jobs = {api.key(j): j for j in api.jobs()}
    conf = api.get_cluster()
    status = cluster_status(jobs, api.nodes(), conf, now, leader, cache=round.job_views(api))
    if conf.status.model_dump(by_alias=True, include=set(STATUS_FIELDS)) != status:
        with contextlib.suppress(store.NotFound):  # deleted meanwhile: its daemon stops too
            api.store.patch(cluster.MosixCluster, cluster.DEFAULT_NAME, {"status": status}, status=True)
    notices = [Notice(_reference_of(e.job, jobs), e.reason, e.message, e.warning) for e in outcome.plan.events]
    return Report(notices, outcome.conflicts, status)


def admit(api: client.Client, name: str, attempts: int = 5) -> Notice | None:
    """A new job's first status (phase, where, homeNode, priority) unless something wrote one already,
    and its Event. The write is conditional on the version read, so a round placing it meanwhile wins."""
    default = api.get_cluster().spec.queue.default_priority
    for _ in range(attempts):
        try:
            raw = api.store.get(job.MosixJob, name)
        except store.NotFound:
            return None
        j = job.MosixJob.model_validate(raw)
        notice = _submitted(j, default)
        if "phase" in (raw.get("status") or {}):
            return notice
        status = _initial(j, default)
        try:
            api.store.patch(job.MosixJob, name, {"metadata": {"resourceVersion": j.metadata.resource_version},
                                                 "status": status}, status=True)
        except store.Conflict:
            continue
        except store.NotFound:
            return None
        return notice
    raise store.Conflict(f"MosixJob {name} kept changing while its first status was written")


def _priority(j: job.MosixJob, default: int) -> int:
    q = j.spec.queue
    return q.priority if q is not None and q.priority is not None else default


def _initial(j: job.MosixJob, default: int) -> dict[str, Any]:
    phase = job.Phase.QUEUED if j.spec.queue is not None else job.Phase.PENDING
    status: dict[str, Any] = {"phase": phase.value, "where": job.where(phase, None)}
    if j.spec.home_node:
        status["homeNode"] = j.spec.home_node
    if j.spec.queue is not None:
        status["priority"] = _priority(j, default)
    return status


def _submitted(j: job.MosixJob, default: int) -> Notice:
    if j.spec.queue is not None:
        return Notice(reference(j), "Queued", f"queued with priority {_priority(j, default)}")
    where = f" {j.spec.node}" if j.spec.node else ""
    return Notice(reference(j), "Submitted", f"submitted, placement {j.spec.placement.value}{where}")


def release(api: client.Client, body: Mapping[str, Any], now: float | None = None) -> str | None:
    """None when a deleted job may go now; else why it waits: its node's agent has not yet stopped
    its containers and cleaned its checkpoints (reported as condition Cleaned=True)."""
    try:
        j = job.MosixJob.model_validate(dict(body))
    except pydantic.ValidationError:  # nothing we could act on: do not hold it forever
        return None
    st = j.status
    if st.processes and not st.phase.finished:
        return _release_processes(api, j, now)
    if st.node is None or st.phase.finished:
        return None
    if any(c.type == CLEANED and c.status == "True" for c in st.conditions):
        return None
    try:
        where = node.MosixNode.model_validate(api.store.get(node.MosixNode, st.node))
    except store.NotFound:
        return None
    dead_after = api.get_cluster().spec.dead_after_seconds
    if not views.node_view(where, now=time.time() if now is None else now, dead_after=dead_after).alive:
        return None
    return f"waiting for the agent on {st.node} to stop the job and clean its checkpoints"


def _release_processes(api: client.Client, j: job.MosixJob, now: float | None) -> str | None:
    """A gang or commands file goes once every live node's agent stopped its processes (phase Stopped)."""
    dead_after = api.get_cluster().spec.dead_after_seconds
    waiting = set()
    for p in j.status.processes.values():
        if p.phase.finished or p.phase == job.Phase.STOPPED or p.node is None:
            continue
        try:
            where = node.MosixNode.model_validate(api.store.get(node.MosixNode, p.node))
        except store.NotFound:
            continue
        if views.node_view(where, now=time.time() if now is None else now, dead_after=dead_after).alive:
            waiting.add(p.node)
    if not waiting:
        return None
    return f"waiting for the agents on {', '.join(sorted(waiting))} to stop the job's processes"
