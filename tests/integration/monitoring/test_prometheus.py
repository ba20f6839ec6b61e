"""Debian's Prometheus scrapes a real local cluster (`mosix up`: agents and control loop) during a short
demo; every PromQL expression of the dashboard returns a series, and every alert rule of the chart
loads, evaluates without error and queries metrics that exist."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from mosix.api import job
from mosix.client import client, local
from mosix.local import cluster as localcluster

REPO = pathlib.Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "charts" / "mosix" / "dashboards" / "mosix.json"
HELM = pathlib.Path(os.environ.get("MOSIX_CACHE", pathlib.Path.home() / ".cache" / "mosix")) / "bin" / "helm"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the local cluster runs jobs with runc and CRIU"),
    pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                       reason="needs Debian's prometheus (hack/setup.sh installs it)"),
    pytest.mark.skipif(not HELM.exists(), reason=f"needs helm at {HELM} (hack/setup.sh extracts it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.load(resp)


def _dashboard_exprs() -> list[str]:
    found: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                found.append(o["expr"].replace("$node", ".*"))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def _rules(tmp: pathlib.Path) -> pathlib.Path:
    rendered = subprocess.run([str(HELM), "template", "mosix", str(REPO / "charts" / "mosix"),
                               "--set", "monitoring.prometheusRule.enabled=true"],
                              capture_output=True, text=True, check=True).stdout
    rule = next(d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "PrometheusRule")
    path = tmp / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


@pytest.fixture
def demo(tmp_path: pathlib.Path) -> Iterator[localcluster.Layout]:
    """A two-node local cluster with a job that ran, moved and was checkpointed, and one left queued."""
    layout = localcluster.Layout(tmp_path / "state")
    try:
        assert localcluster.up(layout, nodes=2, timeout=60) == []
        api = client.Client(local.LocalStore(layout.state))
        spec = job.MosixJobSpec(command=["testload", "-d", "0.05"], placement=job.Placement.NODE, node="1")
        moving = api.submit(spec).name
        queued = job.MosixJobSpec(command=["testload"], queue=job.Queue(), memory_mb=10_000_000)
        api.submit(queued)
        _until(lambda: api.get_job(moving).status.phase == job.Phase.RUNNING)
        api.patch_job(moving, {"checkpointRequest": {"after": "Continue", "serial": 1}})
        _until(lambda: len(api.get_job(moving).status.checkpoints) == 1)
        api.patch_job(moving, {"migration": {"to": "node2", "serial": 1}})
        _until(lambda: api.get_job(moving).status.node == "node2")
        yield layout
    finally:
        localcluster.down(layout)
        mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(str(tmp_path))), reverse=True):
            subprocess.run(["umount", "-l", target], check=False)


def _until(done: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_prometheus_scrapes_the_cluster_and_answers_every_dashboard_and_alert_query(
        demo: localcluster.Layout, tmp_path: pathlib.Path) -> None:
    rules = _rules(tmp_path)
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    port = _free_port()
    agents = [f"127.0.0.{n}:{localcluster.AGENT_METRICS_PORT}" for n in (1, 2)]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "mosix-agent", "static_configs": [{"targets": agents}]},
            {"job_name": "mosix-operator-metrics",
             "static_configs": [{"targets": [f"127.0.0.1:{localcluster.LOOP_METRICS_PORT}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _until(lambda: _ready(port), timeout=60)
        _until(lambda: len(_query(port, 'up == 1')) == 3, timeout=60)
        time.sleep(6)  # a few scrapes, so rate() over them has two samples
        empty = [e for e in _dashboard_exprs() if not _query(port, e)]
        assert empty == [], f"dashboard queries with no series: {empty}"
        groups = _get(port, "/api/v1/rules")["data"]["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        assert loaded and all(r["health"] == "ok" for r in loaded), loaded
        for r in loaded:
            for selector in re.findall(r"\bmosix_[a-z_]+|\bup\{[^}]*\}", r["query"]):
                assert _query(port, selector), f"alert {r['name']}: no series for {selector}"
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
