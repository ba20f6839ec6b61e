"""The control plane's Prometheus metrics: queue length, admissions, placements, migrations, latency."""

from __future__ import annotations

import collections

import prometheus_client

from mosix.policy import decisions, snapshot

QUEUE_LENGTH = prometheus_client.Gauge(
    "mosix_queue_length", "Jobs waiting in the queue", ["priority", "grid_class"])
ADMISSIONS = prometheus_client.Counter("mosix_admissions", "Jobs released from the queue or started", ["reason"])
PLACEMENTS = prometheus_client.Counter("mosix_placements", "Processes placed on a node")
MIGRATIONS = prometheus_client.Counter("mosix_migrations_decided", "Migrations decided", ["reason"])
FREEZES = prometheus_client.Counter("mosix_freezes_decided", "Freezes decided", ["reason"])
DECISION = prometheus_client.Histogram(
    "mosix_decision_seconds", "Time to decide one round",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))

_seen: set[tuple[str, str]] = set()


def observe(snap: snapshot.Snapshot, result: decisions.Decisions, seconds: float) -> None:
    """Records one round."""
    DECISION.observe(seconds)
    default = snap.cluster.default_priority
    waiting: collections.Counter[tuple[str, str]] = collections.Counter()
    if snap.index is not None and snap.index.current(snap):  # counted as jobs came and went
        for (priority, grid_class), count in snap.index.waiting_by().items():
            waiting[str(default if priority is None else priority), str(grid_class)] += count
    else:
        waiting.update((str(j.effective_priority(default)), str(j.grid_class))
                       for j in snap.jobs if j.state is snapshot.JobState.QUEUED)
    for labels in _seen - waiting.keys():
        QUEUE_LENGTH.labels(*labels).set(0)
    for labels, count in waiting.items():
        QUEUE_LENGTH.labels(*labels).set(count)
    _seen.update(waiting.keys())
    for a in result.admissions:
        ADMISSIONS.labels(a.reason.value).inc()
        PLACEMENTS.inc(len(a.nodes))
    for m in result.migrations:
        MIGRATIONS.labels(m.reason.value).inc()
    for f in result.freezes:
        FREEZES.labels(f.reason.value).inc()
