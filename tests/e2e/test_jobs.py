"""Jobs on a running cluster (real agents with runc and CRIU, as root): run, finish, freeze, continue,
checkpoint, and recovery when a node's agent dies."""

from __future__ import annotations

import pathlib
import subprocess
import time

from mosix.api import job
from tests.e2e import harness
from tests.e2e.test_agent_crash import home_output

pytestmark = harness.RUNS_JOBS


def _phase(cluster: harness.Cluster, name: str) -> job.Phase:
    return cluster.status(name).phase


def test_a_job_runs_to_its_exit_code_on_the_node_asked(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    ok = cluster.submit("-2", "testload", "-n", "3", "-d", "0.01")
    bad = cluster.submit("-1", "sh", "-c", "exit 7")
    cluster.wait_for("both jobs to finish", lambda: _phase(cluster, ok).finished and _phase(cluster, bad).finished)
    done, failed = cluster.status(ok), cluster.status(bad)
    assert (done.phase, done.exit_code, done.node) == (job.Phase.SUCCEEDED, 0, "node2")
    assert (failed.phase, failed.exit_code, failed.node) == (job.Phase.FAILED, 7, "node1")


def test_freeze_continue_and_checkpoint_through_migrate(cluster: harness.Cluster) -> None:
    cluster.up(nodes=1)
    name = cluster.submit("-1", "testload", "-d", "0.05")
    cluster.wait_for("the job to run", lambda: _phase(cluster, name) == job.Phase.RUNNING)
    cluster.run("migrate", name, "freeze")
    cluster.wait_for("the job to freeze", lambda: _phase(cluster, name) == job.Phase.FROZEN)
    frozen = cluster.run("mosps", "-A").stdout
    assert [line.split()[4] for line in frozen.splitlines()[1:]] == ["M"]
    cluster.run("migrate", name, "continue")
    cluster.wait_for("the job to continue", lambda: _phase(cluster, name) == job.Phase.RUNNING)
    cluster.run("migrate", name, "checkpoint")
    cluster.wait_for("a checkpoint", lambda: len(cluster.status(name).checkpoints) == 1)
    assert cluster.status(name).phase == job.Phase.RUNNING
    cluster.run("moskillall", "-9")
    cluster.wait_for("the job to end on SIGKILL", lambda: _phase(cluster, name).finished)
    assert cluster.status(name).exit_code == 128 + 9


def _stopped_by(cluster: harness.Cluster, action: str) -> tuple[str, pathlib.Path, str]:
    """A counting job on node1 checkpointed by `migrate {job} {action}`: the job, its set, its output by then."""
    cluster.up(nodes=1)
    name = cluster.submit("-1", "testload", "-d", "0.05")
    cluster.wait_for("output at home", lambda: len(home_output(cluster, 1, name).splitlines()) >= 10)
    pid = cluster.status(name).orig_pid
    cluster.run("migrate", name, action)
    after = job.Phase.STOPPED if action == "checkstop" else job.Phase.SUCCEEDED
    cluster.wait_for(f"the job {after.value.lower()}", lambda: _phase(cluster, name) == after)
    status = cluster.status(name)
    assert [c.node for c in status.checkpoints] == [None]  # one set, shared (the e2e agents share checkpoints)
    assert pid is not None and not pathlib.Path(f"/proc/{pid}").exists()  # the process is gone
    output = home_output(cluster, 1, name)
    assert output == "".join(f"{i}\n" for i in range(len(output.splitlines())))  # whole up to the checkpoint
    return name, pathlib.Path(status.checkpoints[0].name), output


def _recovered_from(cluster: harness.Cluster, checkpoint: pathlib.Path, before: str) -> None:
    """mosrun -R{set}: the program goes on counting from where its set left it."""
    again = cluster.submit("-1", f"-R{checkpoint}")
    cluster.wait_for("the recovered job's output", lambda: len(home_output(cluster, 1, again).splitlines()) >= 10)
    after = [int(n) for n in home_output(cluster, 1, again).split()]
    assert after[0] == len(before.splitlines()) and after == list(range(after[0], after[0] + len(after)))
    cluster.run("moskillall", "-9")


def test_checkstop_through_migrate_stops_the_job_at_a_checkpoint(cluster: harness.Cluster) -> None:
    """migrate {job} checkstop: checkpointed, then stopped (not finished): its process gone, its set kept."""
    name, checkpoint, output = _stopped_by(cluster, "checkstop")
    assert checkpoint.is_dir()
    time.sleep(2)  # some agent rounds: a stopped job stays so, with no output after its checkpoint
    status = cluster.status(name)
    assert (status.phase, status.node, len(status.checkpoints)) == (job.Phase.STOPPED, "node1", 1)
    assert home_output(cluster, 1, name) == output
    _recovered_from(cluster, checkpoint, output)


def test_exit_through_migrate_ends_the_job_at_a_checkpoint(cluster: harness.Cluster) -> None:
    """migrate {job} exit: checkpointed, then its container removed and the job Succeeded."""
    name, checkpoint, output = _stopped_by(cluster, "exit")
    status = cluster.status(name)
    assert status.completion_time is not None and f"checkpointed to {checkpoint}" in (status.message or "")
    assert checkpoint.is_dir()
    runc_root = cluster.workdir / "state" / "nodes" / "node1" / "runc"
    listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True,
                            check=False)
    assert listed.stdout.split() == []  # no container left
    _recovered_from(cluster, checkpoint, output)


def test_a_checkpointed_job_resumes_elsewhere_when_its_node_dies(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", f"-C{cluster.workdir}/ckpt", "testload", "-d", "0.05")
    cluster.wait_for("the job to run", lambda: _phase(cluster, name) == job.Phase.RUNNING)
    cluster.run("migrate", name, "checkpoint")
    cluster.wait_for("a checkpoint", lambda: len(cluster.status(name).checkpoints) == 1)
    cluster.kill_agent(1)
    cluster.wait_for("recovery on node2",
                     lambda: (cluster.status(name).node, _phase(cluster, name)) == ("node2", job.Phase.RUNNING),
                     timeout=90)


def test_migrate_moves_a_job_and_back_home(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", "-L", "testload", "-d", "0.05")  # locked: only the user moves it
    cluster.wait_for("the job to run", lambda: _phase(cluster, name) == job.Phase.RUNNING)
    refused = cluster.run("migrate", name, "2", check=False)
    assert refused.returncode == 1 and "locked" in refused.stderr
    mobile = cluster.submit("-1", "testload", "-d", "0.05")
    cluster.wait_for("the second job to run", lambda: _phase(cluster, mobile) == job.Phase.RUNNING)
    cluster.run("migrate", mobile, "2")
    cluster.wait_for("the job on node2",
                     lambda: (cluster.status(mobile).node, _phase(cluster, mobile)) == ("node2", job.Phase.RUNNING))
    assert cluster.status(mobile).migrations == 1
    cluster.run("migrate", mobile, "home")
    cluster.wait_for("the job back home", lambda: cluster.status(mobile).node == "node1"
                     and _phase(cluster, mobile) == job.Phase.RUNNING)
    status = cluster.status(mobile)
    assert status.migrations == 2 and status.last_freeze_ms is not None
    row = {line.split()[0]: line.split() for line in cluster.run("mosps", "-An").stdout.splitlines()[1:]}
    assert row[mobile][1:3] == ["here", "here"] and row[mobile][5] == "2"


def test_cpu_bound_jobs_started_on_node1_spread_over_the_nodes(cluster: harness.Cluster) -> None:
    cluster.up(nodes=3)
    names = [cluster.submit("testload") for _ in range(3)]  # home node1: they start there
    cluster.wait_for("the jobs to run", lambda: all(_phase(cluster, n) == job.Phase.RUNNING for n in names))
    cluster.wait_for("the load balancer to spread them",
                     lambda: len({cluster.status(n).node for n in names}) == 3, timeout=120)
    assert sum(cluster.status(n).migrations for n in names) >= 2
