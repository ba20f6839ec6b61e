"""A node's agent crashes (kill -9) in the middle of a job: its keeper starts it again, the agent adopts
the job, and the job finishes untouched, its output at home whole: no restart, no failure, no line
lost or repeated. The same on the local cluster and on a real API server."""

from __future__ import annotations

import pathlib

from mosix.api import job
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS

ECHO_SLOWLY = 'while read -r l; do echo "$l"; sleep 0.05; done; echo END'


def numbered(n: int, start: int = 0) -> str:
    return "".join(f"{i}\n" for i in range(start, start + n))


def home_output(cluster: harness.Cluster, home: int, name: str) -> str:
    """What the home node's agent keeps of the job's stdout (its files: the agents run as local processes)."""
    files = list((cluster.workdir / "state" / "nodes" / f"node{home}" / "home").glob(f"*{name}/stdout"))
    return files[0].read_text() if files else ""


def lines(cluster: harness.Cluster, name: str) -> int:
    return len(home_output(cluster, 1, name).splitlines())


def test_a_job_finishes_whole_through_crashes_of_its_agent_and_of_its_home_agent(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    # Home node1, runs on node2 for 15 s; locked (-L) so that the balancer cannot move it home while node2's
    # agent restarts (a legitimate move, but then "the same process on node2 all along" could not be checked).
    name = cluster.submit("-2", "-L", "testload", "-n", "300", "-d", "0.05")
    cluster.wait_for("the job to run on node2", lambda: (cluster.status(name).node, cluster.status(name).phase)
                     == ("node2", job.Phase.RUNNING))
    pid = cluster.status(name).orig_pid
    cluster.wait_for("output at home", lambda: lines(cluster, name) >= 20)
    cluster.crash_agent(2)  # the node running it
    cluster.wait_for("more output at home", lambda: lines(cluster, name) >= 80)
    cluster.crash_agent(1)  # its home, which keeps the output
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    status = cluster.status(name)
    assert (status.phase, status.exit_code, status.node) == (job.Phase.SUCCEEDED, 0, "node2"), status.message
    assert status.orig_pid == pid and status.migrations == 0  # the same process all along: never started again
    assert home_output(cluster, 1, name) == "".join(f"{i}\n" for i in range(300))
    log = pathlib.Path(cluster.workdir / "agent-2.log").read_text()
    assert "adopted 1 job(s)" in log


def test_a_job_that_ends_while_its_agent_is_down_reports_its_exit_code(cluster: harness.Cluster) -> None:
    cluster.up(nodes=1)
    name = cluster.submit("-1", "sh", "-c", "testload -n 40 -d 0.05; exit 3")  # 2 s
    cluster.wait_for("output at home", lambda: lines(cluster, name) >= 5)
    cluster.crash_agent(1)
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    status = cluster.status(name)
    assert (status.phase, status.exit_code) == (job.Phase.FAILED, 3), status.message
    assert home_output(cluster, 1, name) == "".join(f"{i}\n" for i in range(40))


def test_input_goes_on_through_a_crash_of_the_agent_feeding_it(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    mosrun, name = cluster.mosrun_fed("-2", "sh", "-c", ECHO_SLOWLY, first=numbered(100))
    try:
        cluster.wait_for("the job to echo its input", lambda: lines(cluster, name) >= 10)
        cluster.crash_agent(2)  # its feeder dies mid-input; the restarted agent feeds on from the persisted offset
        out, err = mosrun.communicate(numbered(50, start=100).encode(), timeout=120)  # then EOF
    finally:
        if mosrun.poll() is None:
            mosrun.kill()
            mosrun.wait()
    assert mosrun.returncode == 0, err
    assert out.decode() == numbered(150) + "END\n"
