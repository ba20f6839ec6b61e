"""One control round over any store: read everything, decide with the policy core, write desired state."""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Callable

from mosix.api import job, meta
from mosix.client import client, store
from mosix.controller import metrics, plan, views
from mosix.policy import decide, decisions, snapshot


@dataclasses.dataclass
class Outcome:
    """What one round did: the plan it applied, how long deciding took, and patches that failed."""

    plan: plan.Plan
    decide_seconds: float
    conflicts: list[str]


_VIEWS: weakref.WeakKeyDictionary[client.Client, views.JobViews] = weakref.WeakKeyDictionary()  # per client


def job_views(api: client.Client) -> views.JobViews:
    """The jobs' views kept between rounds for this client (one store: resourceVersions are its own)."""
    return _VIEWS.setdefault(api, views.JobViews())


def run_round(api: client.Client, now: float | None = None) -> Outcome:
    """Reads jobs, nodes and the cluster; decides; patches job status. Safe to repeat (level-triggered).
    The jobs' views are kept per client between rounds (`views.JobViews`)."""
    now = time.time() if now is None else now
    by_name = {api.key(j): j for j in api.jobs()}
    conf = api.get_cluster()
    started = time.perf_counter()
    kept = job_views(api)
    snap = views.snapshot_of(by_name, api.nodes(), conf, now, kept)
    result = decide.decide(snap)
    elapsed = time.perf_counter() - started
    out = plan_round(by_name, snap, result, conf.spec.queue.default_priority, kept)
    metrics.observe(snap, result, elapsed)
    return Outcome(out, elapsed, apply_plan(api.patch_job_status, by_name, out, kept))


def apply_plan(patch_status: Callable[[str, plan.Patch], job.MosixJob], by_name: dict[str, job.MosixJob],
               out: plan.Plan, kept: views.JobViews) -> list[str]:
    """Every patch of `out` through `patch_status`; the patches that failed. The views learn what each
    patched job became (`views.JobViews.patched`)."""
    conflicts = []
    for name, patch in out.patches.items():
        try:
            new = patch_status(name, patch)
        except (store.NotFound, store.Conflict) as e:  # deleted or changed meanwhile: next round sees it
            conflicts.append(f"{name}: {e}")
            continue
        kept.patched(name, by_name[name], new)
    return conflicts


def plan_round(by_name: dict[str, job.MosixJob], snap: snapshot.Snapshot, result: decisions.Decisions,
               default_priority: int, kept: views.JobViews) -> plan.Plan:
    """The round's status patches and events: the decisions, and what each job's own spec and status ask
    for, of the jobs changed or patched since the last round (`views.JobViews`); of every waiting job when
    the cluster's default priority changed (the priority in force of those without their own)."""
    out = plan.Plan()
    changed = kept.changed(by_name)
    plan.summaries(changed, out)
    plan.requests(changed, out, {n.name: n for n in snap.nodes})
    plan.decided(result, by_name, out)
    plan.unsupported(changed, out, meta.now_rfc3339())
    asked = set(out.patches)
    admitted = {a.job for a in result.admissions}
    visit = changed if kept.default_priority == default_priority else by_name
    plan.waiting(((k, j) for k, j in visit.items()
                  if j.spec.queue is not None and j.status.phase == job.Phase.QUEUED and k not in admitted
                  and not j.metadata.deletion_timestamp), default_priority, out)
    kept.planned(out.patches, asked, default_priority)
    return out
