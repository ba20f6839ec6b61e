"""The agent's metrics carry the names and labels the chart's dashboard and alerts query."""

from __future__ import annotations

import os
import pathlib
import re

import prometheus_client

from mosix.agent import metrics
from mosix.api import node

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mosix" / "dashboards" / "mosix.json"


def test_node_and_job_metrics_are_published() -> None:
    status = node.MosixNodeStatus(load=1.5, frozen=2, procs=3, speed=1000, read_kbps=4.0,
                                  memory=node.Memory(available_mb=100, total_mb=200),
                                  boot_time="2026-12-02T00:00:00+00:00")
    metrics.node_status("mnode7", status, interval=2.0)
    cpu, rss = metrics.job_usage([os.getpid()])
    assert cpu > 0 and rss > 0
    metrics.job("ns", "1001", cpu, rss)
    text = prometheus_client.generate_latest().decode()
    assert 'mosix_node_load{node="mnode7"} 1.5' in text
    assert 'mosix_node_memory_total_bytes{node="mnode7"} 2.097152e+08' in text
    assert 'mosix_node_read_bytes_total{node="mnode7"} 8192.0' in text
    assert 'mosix_job_rss_bytes{mosixjob="1001",namespace="ns"}' in text
    metrics.forget_job("ns", "1001")
    assert 'mosixjob="1001"' not in prometheus_client.generate_latest().decode()


def test_every_metric_the_dashboard_uses_is_exported() -> None:
    from mosix.controller import metrics as control  # registers the control plane's metrics too

    assert control.DECISION is not None
    used = set(re.findall(r"\bmosix_[a-z_]+", DASHBOARD.read_text()))
    ours = {m.name for m in prometheus_client.REGISTRY.collect()}
    exported = ours | {f"{n}{suffix}" for n in ours for suffix in ("_total", "_bucket", "_count", "_sum")}
    assert sorted(used - exported) == []
