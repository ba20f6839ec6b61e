"""A node's agent crashes (kill -9) in the middle of a job: its keeper starts it again, the agent adopts
the job, and the job finishes untouched, its output at home whole: no restart, no failure, no line
lost or repeated. A migration's target agent crashing in the middle of the transfer leaves the job
running where it was. The same on the local cluster and on a real API server."""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import time

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


def _received(cluster: harness.Cluster, number: int) -> int:
    """Bytes node `number` holds of incoming migrations so far (pages from its page servers, or sets)."""
    total = 0
    for image in (cluster.workdir / "state" / "nodes" / f"node{number}" / "incoming").rglob("*"):
        with contextlib.suppress(OSError):
            total += image.stat().st_size if image.is_file() else 0
    return total


def test_a_migration_whose_target_agent_is_killed_mid_transfer_leaves_the_job_running(
        cluster: harness.Cluster) -> None:
    """The job (256 MiB resident, so its pages take a while to move) is asked to go to node2; once node2
    has received some of its pages, node2's agent is killed -9. The migration is rolled back: the same
    process runs on at node1, and node2, its agent started again by its keeper, runs nothing of it."""
    cluster.up(nodes=2)
    with harness.no_load_balancing(cluster):  # the request is the only reason to move
        name = cluster.submit("-1", "testload", "-m", "256", "-n", "400", "-d", "0.05")
        cluster.wait_for("the job to run on node1", lambda: (cluster.status(name).node, cluster.status(name).phase)
                         == ("node1", job.Phase.RUNNING))
        pid = cluster.status(name).orig_pid
        cluster.wait_for("output at home", lambda: lines(cluster, name) >= 20)
        cluster.run("migrate", name, "2", "--stop-and-copy")  # its pages land in files on node2
        deadline, seen, checked = time.monotonic() + 60, 0, time.monotonic()
        while (seen := max(seen, _received(cluster, 2))) < 16 << 20:  # files only, at once: the move is quick
            assert time.monotonic() < deadline, f"node2 received {seen} bytes"
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                assert cluster.status(name).migrations == 0, f"moved before node2's agent was killed ({seen} B)"
        cluster.crash_agent(2)  # mid-transfer
        cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    status = cluster.status(name)
    assert (status.phase, status.exit_code, status.node) == (job.Phase.SUCCEEDED, 0, "node1"), status.message
    assert status.orig_pid == pid and status.migrations == 0  # rolled back: the same process, never moved
    assert home_output(cluster, 1, name) == numbered(400)
    root = cluster.workdir / "state" / "nodes" / "node2" / "runc"
    listed = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True, check=False)
    assert listed.stdout.split() == []  # nothing restored on node2
