"""Unsupported features on a running cluster: a job holding a perf_event counter, which CRIU cannot
checkpoint, is found out when it is asked to move. With -e it runs on unmigratable (mosps FRZ N/A,
an Event says why, further moves are refused); with -w it also gets a warning on its stderr; by
default it is killed, as MOSIX kills a process that uses an unsupported feature."""

from __future__ import annotations

import json
import subprocess

from mosix.api import job
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS

REASON = "fd 3 is anon_inode:[perf_event]"


def _events(cluster: harness.Cluster, name: str) -> list[tuple[str, str]]:
    """(reason, message) of the Events about the job, local or on the API server."""
    if cluster.kubeconfig:
        out = subprocess.run(
            ["kubectl", "--kubeconfig", cluster.kubeconfig, "-n", cluster.namespace, "get", "events", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [
            (e.get("reason", ""), e.get("message", ""))
            for e in json.loads(out)["items"]
            if e.get("involvedObject", {}).get("name") == name
        ]
    path = cluster.workdir / "state" / "events.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(e["reason"], e["message"]) for e in found if e["job"].rsplit("/", 1)[-1] == name]


def _asked_to_move(cluster: harness.Cluster, *flags: str) -> str:
    """A job holding the unsupported feature, started on node1 and then asked to migrate to node2."""
    cluster.up(nodes=2)
    name = cluster.submit(*flags, "-1", "testload", "--perf", "-d", "0.05")
    cluster.wait_for("the job to run", lambda: cluster.status(name).phase == job.Phase.RUNNING)
    cluster.run("migrate", name, "2")
    cluster.wait_for("the dump to be refused", lambda: not cluster.status(name).migratable)
    return name


def test_with_e_the_job_runs_on_unmigratable_and_says_why(cluster: harness.Cluster) -> None:
    name = _asked_to_move(cluster, "-e")
    status = cluster.status(name)
    assert (status.phase, status.node, status.unsupported_reason) == (job.Phase.RUNNING, "node1", REASON)
    cluster.wait_for(
        "the Event", lambda: any(r == "UnsupportedFeature" and REASON in m for r, m in _events(cluster, name))
    )
    row = next(line for line in cluster.run("mosps", "-n").stdout.splitlines() if name in line.split())
    assert "N/A" in row.split()
    refused = cluster.run("migrate", name, "2", check=False)
    assert refused.returncode != 0 and f"cannot migrate: {REASON}" in refused.stderr
    cluster.run("migrate", name, "freeze", check=False)
    assert cluster.status(name).phase == job.Phase.RUNNING and cluster.status(name).node == "node1"


def test_with_w_the_job_also_gets_a_warning_on_its_stderr(cluster: harness.Cluster) -> None:
    name = _asked_to_move(cluster, "-w")
    assert cluster.status(name).phase == job.Phase.RUNNING
    cluster.wait_for(
        "the warning at home",
        lambda: f"MOSRUN: {REASON}: continuing without migration" in cluster.run("mosix", "logs", name).stderr,
    )


def test_by_default_the_job_is_killed_with_the_reason(cluster: harness.Cluster) -> None:
    name = _asked_to_move(cluster)
    cluster.wait_for("the job to fail", lambda: cluster.status(name).phase == job.Phase.FAILED)
    status = cluster.status(name)
    assert status.node == "node1" and status.exit_code == 137
    assert status.message is not None and f"MOSRUN: {REASON}: not supported under MOSIX" in status.message
