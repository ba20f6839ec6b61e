"""mosrun -i on a running cluster: the terminal's input reaches the job through its home node, every
line once and in order, while the job migrates away from home; EOF on mosrun's stdin ends the job's."""

from __future__ import annotations

import subprocess
import time

from mosix.api import job
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS

ECHO_SLOWLY = 'while read -r l; do echo "$l"; sleep 0.02; done; echo END'


def lines(n: int, start: int = 0) -> str:
    return "".join(f"line {i}\n" for i in range(start, start + n))


def test_input_reaches_the_job_through_a_migration(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    mosrun, name = cluster.mosrun_fed("-1", "sh", "-c", ECHO_SLOWLY, first=lines(100))
    try:
        def at(node: str) -> bool:
            status = cluster.status(name)
            return (status.node, status.phase) == (node, job.Phase.RUNNING)

        cluster.wait_for("the job to run", lambda: at("node1"))
        time.sleep(0.5)  # let it read part of the input: the rest waits in its pipe when it is dumped
        cluster.run("migrate", name, "2")
        cluster.wait_for("the job on node2", lambda: at("node2"))
        out, err = mosrun.communicate(lines(50, start=100).encode(), timeout=120)  # then EOF
    finally:
        if mosrun.poll() is None:
            mosrun.kill()
            mosrun.wait()
    assert (mosrun.returncode, out.decode()) == (0, lines(150) + "END\n"), err.decode()
    assert cluster.status(name).migrations == 1


def test_without_i_the_jobs_stdin_is_empty(cluster: harness.Cluster) -> None:
    cluster.up(nodes=1)
    done = subprocess.run(
        ["mosrun", "-1", "sh", "-c", "cat; echo rc=$?"],
        env=cluster.env,
        cwd=cluster.workdir,
        input=b"not for the job\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, b"rc=0\n")


def test_mosix_logs_attaches_input_after_mosrun_is_gone(cluster: harness.Cluster) -> None:
    cluster.up(nodes=1)
    mosrun, name = cluster.mosrun_fed("-1", "sh", "-c", ECHO_SLOWLY, first=lines(5), output=subprocess.DEVNULL)
    try:
        cluster.wait_for("its first lines home", lambda: cluster.run("mosix", "logs", name).stdout == lines(5))
    finally:
        mosrun.kill()  # the terminal is gone, not the job, and its input has not ended
        mosrun.wait()
    attached = subprocess.run(
        ["mosix", "logs", "-i", name],
        env=cluster.env,
        cwd=cluster.workdir,
        input=lines(5, start=5).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (attached.returncode, attached.stdout.decode()) == (0, lines(10) + "END\n"), attached.stderr
    plain = cluster.submit("-1", "sh", "-c", "sleep 30")
    refused = cluster.run("mosix", "logs", "-i", plain, check=False)
    assert refused.returncode != 0 and "not started with mosrun -i" in refused.stderr
