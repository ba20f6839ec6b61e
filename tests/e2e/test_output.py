"""A job's output lives at its home node: foreground mosrun streams it and returns the exit code, and
nothing is lost or repeated through migrations and a freeze."""

from __future__ import annotations

import os

import pytest

from mosix.api import job
from tests.e2e import harness

pytestmark = [
    *harness.RUNS_JOBS,
    pytest.mark.skipif(bool(os.environ.get("MOSIX_E2E_KUBECONFIG")),
                       reason="on Kubernetes output is read in the home node's agent pod, and these agents run "
                              "as local processes, not pods (tests/chart/test_install.py reads it with mosix logs)"),
]


def test_foreground_mosrun_streams_output_and_returns_the_exit_code(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    done = cluster.run("mosrun", "-2", "testload", "-n", "20", "-d", "0.02")
    assert done.stdout == "".join(f"{i}\n" for i in range(20))
    failed = cluster.run("mosrun", "-1", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "out\n", "err\n")


def test_output_through_two_migrations_and_a_freeze_is_complete(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", "testload", "-n", "200", "-d", "0.03")

    def at(node: str) -> bool:
        status = cluster.status(name)
        return (status.node, status.phase) == (node, job.Phase.RUNNING)

    cluster.wait_for("the job to run", lambda: at("node1"))
    cluster.run("migrate", name, "2")
    cluster.wait_for("the job on node2", lambda: at("node2"))
    cluster.run("migrate", name, "freeze")
    cluster.wait_for("the job frozen", lambda: cluster.status(name).phase == job.Phase.FROZEN)
    cluster.run("migrate", name, "continue")
    cluster.wait_for("the job running again", lambda: at("node2"))
    cluster.run("migrate", name, "home")
    cluster.wait_for("the job home", lambda: at("node1"))
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    assert cluster.status(name).migrations == 2
    out = cluster.run("mosix", "logs", name).stdout
    assert out == "".join(f"{i}\n" for i in range(200))


def test_a_large_job_moves_by_post_copy_and_its_output_is_complete(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", "testload", "-m", "300", "-n", "150", "-d", "0.08")  # 300 MiB > the 256 MiB cut; 12 s
    cluster.wait_for("the job to run", lambda: cluster.status(name).phase == job.Phase.RUNNING)
    cluster.run("migrate", name, "2")
    cluster.wait_for("the job on node2", lambda: cluster.status(name).node == "node2"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    assert "by post-copy" in (cluster.workdir / "agent-1.log").read_text()
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    assert cluster.run("mosix", "logs", name).stdout == "".join(f"{i}\n" for i in range(150))


def test_post_copy_when_asked_even_for_a_small_job(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", "testload", "-n", "120", "-d", "0.05")  # a few MiB: Auto would copy it all first
    cluster.wait_for("the job to run", lambda: cluster.status(name).phase == job.Phase.RUNNING)
    cluster.run("migrate", name, "--postcopy", "2")
    cluster.wait_for("the job on node2", lambda: cluster.status(name).node == "node2"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    assert "→ node2 by post-copy" in (cluster.workdir / "agent-1.log").read_text()
    cluster.run("migrate", name, "home")
    cluster.wait_for("the job home", lambda: cluster.status(name).node == "node1"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    assert "→ node1 by stop-and-copy" in (cluster.workdir / "agent-2.log").read_text()
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    assert cluster.run("mosix", "logs", name).stdout == "".join(f"{i}\n" for i in range(120))
