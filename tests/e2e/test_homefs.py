"""The working directory is the home node's wherever the job runs (real agents, runc, CRIU and FUSE)."""

from __future__ import annotations

import pathlib

import pytest

from mosix.api import job
from tests.e2e import harness

pytestmark = [
    *harness.RUNS_JOBS,
    pytest.mark.skipif(not pathlib.Path("/dev/fuse").exists(), reason="needs /dev/fuse for the home directory"),
]

# One descriptor, opened once in the directory mosrun ran in, written through to the end.
COUNT = "exec 3>numbers; i=0; while [ $i -lt {n} ]; do echo $i >&3; i=$((i+1)); sleep 0.05; done"


def _lines(path: pathlib.Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _home_and_whole(cluster: harness.Cluster, name: str, numbers: pathlib.Path) -> None:
    """The job goes home and writes on there; what it wrote is whole and in order: its offset was kept."""
    cluster.run("migrate", name, "home")
    cluster.wait_for("the job back home", lambda: cluster.status(name).node == "node1"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    back = _lines(numbers)
    cluster.wait_for("lines written at home again", lambda: _lines(numbers) >= back + 20)
    written = [int(x) for x in numbers.read_text().split()[:back + 20]]
    assert written == list(range(back + 20))


def test_a_job_writes_its_home_directory_from_another_node_and_back(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    numbers = cluster.workdir / "numbers"  # mosrun runs in cluster.workdir: the job's working directory
    total = 100_000  # far more than the scenario waits for
    name = cluster.submit("-1", "sh", "-c", COUNT.format(n=total))
    cluster.wait_for("the job to write at home", lambda: _lines(numbers) >= 10)
    cluster.run("migrate", name, "2")
    cluster.wait_for("the job on node2", lambda: cluster.status(name).node == "node2"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    moved = _lines(numbers)
    cluster.wait_for("lines from node2 in home's directory", lambda: _lines(numbers) >= moved + 20)
    _home_and_whole(cluster, name, numbers)
    assert cluster.status(name).migrations == 2


def test_the_home_directory_stays_mounted_through_a_crash_of_the_agent_running_the_job(
        cluster: harness.Cluster) -> None:
    """The FUSE process of a job away from home outlives a crash of that node's agent: the job writes on
    through it, and the restarted agent drains and releases the mount when the job goes home."""
    cluster.up(nodes=2)
    numbers = cluster.workdir / "numbers"
    name = cluster.submit("-2", "-c", "sh", "-c", COUNT.format(n=100_000))  # -c: the I/O policy leaves it there
    cluster.wait_for("the job on node2", lambda: cluster.status(name).node == "node2"
                     and cluster.status(name).phase == job.Phase.RUNNING)
    cluster.wait_for("lines from node2 in home's directory", lambda: _lines(numbers) >= 10)
    cluster.crash_agent(2)
    crashed = _lines(numbers)
    cluster.wait_for("lines written while node2's agent restarted", lambda: _lines(numbers) >= crashed + 20)
    _home_and_whole(cluster, name, numbers)
    assert cluster.status(name).migrations == 1


@pytest.mark.parametrize("flag", ["-M", "-E"])
def test_a_directory_given_with_m_or_e_is_where_the_job_runs(cluster: harness.Cluster, flag: str) -> None:
    """mosrun -M/{dir} and -E/{dir} (the tutorial's "directory where the job should run"): the job, started on
    node2, runs in home's dir, not in the directory mosrun ran in."""
    cluster.up(nodes=2)
    there = cluster.workdir / f"run here {flag[1:]}"  # a space: a path is data, not shell
    there.mkdir()
    name = cluster.submit("-2", f"{flag}{there}", "sh", "-c", "pwd > where; echo made > file")
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished)
    status = cluster.status(name)
    assert (status.phase, status.node) == (job.Phase.SUCCEEDED, "node2"), status.message
    assert ((there / "where").read_text().strip(), (there / "file").read_text()) == (str(there), "made\n")
    assert not (cluster.workdir / "file").exists()
