"""Jobs of several processes: a -P gang leaves the queue only when all its slots are free and spreads
over the nodes; a -S commands file runs at most max lines at once until every line ran. Each process
is its own container, and its output is kept at home."""

from __future__ import annotations

from mosix.api import job, meta
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS


def _finished(cluster: harness.Cluster, name: str) -> bool:
    return cluster.status(name).phase.finished


def _logs(cluster: harness.Cluster, name: str) -> list[str]:
    """The job's output lines at home (on Kubernetes, through the home agent's user API)."""
    return cluster.run("mosix", "logs", name).stdout.splitlines()


def test_a_gang_waits_for_three_free_slots_then_runs_one_process_per_node(cluster: harness.Cluster) -> None:
    cluster.up(nodes=3)
    blocker = cluster.submit("-1", "-J5", "testload")  # holds node 1's only CPU until killed
    cluster.wait_for("the blocker to run", lambda: cluster.status(blocker).phase == job.Phase.RUNNING)
    gang = cluster.submit("-q", "-P3", "-J6", "sh", "-c", 'testload -n 3 -d 0.2; echo "process $MOSIX_PROCESS done"')
    cluster.wait_for("the gang to wait for its slots",
                     lambda: cluster.status(gang).message == "waiting: GangIncomplete", timeout=90)
    waiting = cluster.status(gang)
    assert (waiting.phase, waiting.processes) == (job.Phase.QUEUED, {})  # never partly released
    cluster.run("moskillall", "-9", "-J5")
    cluster.wait_for("the blocker to end", lambda: _finished(cluster, blocker))
    cluster.wait_for("the gang to finish", lambda: _finished(cluster, gang), timeout=120)
    done = cluster.status(gang)
    assert (done.phase, done.exit_code) == (job.Phase.SUCCEEDED, 0)
    assert sorted(done.processes) == ["0", "1", "2"]
    assert sorted(p.node or "" for p in done.processes.values()) == ["node1", "node2", "node3"]
    assert {(p.phase, p.exit_code) for p in done.processes.values()} == {(job.Phase.SUCCEEDED, 0)}
    starts = [meta.seconds(p.start_time) or 0.0 for p in done.processes.values()]
    ends = [meta.seconds(p.completion_time) or 0.0 for p in done.processes.values()]
    assert max(starts) < min(ends)  # released together: all three ran at the same time
    lines = _logs(cluster, gang)
    assert sorted(line for line in lines if "done" in line) == [f"process {i} done" for i in range(3)]
    assert sorted(line for line in lines if "done" not in line) == sorted(["0", "1", "2"] * 3)


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most half-open [start, end) intervals that overlap at one instant."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = running = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: a line starts after one ended
        running += step
        most = max(most, running)
    return most


def test_a_commands_file_runs_at_most_max_lines_at_once_and_all_of_them(cluster: harness.Cluster) -> None:
    cluster.up(nodes=3)
    commands = cluster.workdir / "commands"
    commands.write_text("".join(f'sh -c "testload -n 2 -d 0.3; echo line {i}"\n' for i in range(1, 6)))
    name = cluster.submit("-S2", str(commands))
    seen = 0

    def finished_watching() -> bool:
        nonlocal seen
        status = cluster.status(name)
        seen = max(seen, sum(1 for p in status.processes.values() if not p.phase.finished))
        return status.phase.finished

    cluster.wait_for("every line to run", finished_watching, timeout=120)
    done = cluster.status(name)
    assert (done.phase, done.exit_code, done.finished_lines, done.running_lines) == (job.Phase.SUCCEEDED, 0, 5, 0)
    assert sorted(done.processes, key=int) == ["0", "1", "2", "3", "4"]
    assert 1 <= seen <= 2
    intervals = [(meta.seconds(p.start_time) or 0.0, meta.seconds(p.completion_time) or 0.0)
                 for p in done.processes.values()]
    assert _most_at_once(intervals) <= 2
    lines = _logs(cluster, name)
    assert sorted(line for line in lines if line.startswith("line")) == [f"line {i}" for i in range(1, 6)]
    assert sorted(line for line in lines if not line.startswith("line")) == sorted(["0", "1"] * 5)


def test_a_failing_line_fails_the_job_with_its_exit_code_after_the_others_ran(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    commands = cluster.workdir / "commands"
    commands.write_text("sh -c 'echo one'\nsh -c 'exit 4'\nsh -c 'echo three'\n")
    name = cluster.submit("-S1", str(commands))
    cluster.wait_for("the job to end", lambda: _finished(cluster, name), timeout=90)
    done = cluster.status(name)
    assert (done.phase, done.exit_code, done.finished_lines) == (job.Phase.FAILED, 4, 3)
    assert done.message is not None and done.message.startswith("process 1 failed")
    assert [done.processes[i].exit_code for i in ("0", "1", "2")] == [0, 4, 0]


def test_a_gang_freezes_continues_checkpoints_and_is_killed_process_by_process(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    gang = cluster.submit("-q", "-P2", "testload", "-d", "0.05")

    def phases(*want: job.Phase) -> bool:
        status = cluster.status(gang)
        return len(status.processes) == 2 and {p.phase for p in status.processes.values()} <= set(want)

    cluster.wait_for("both processes to run", lambda: phases(job.Phase.RUNNING)
                     and cluster.status(gang).phase == job.Phase.RUNNING)
    cluster.run("migrate", gang, "freeze")
    cluster.wait_for("both processes frozen", lambda: phases(job.Phase.FROZEN)
                     and cluster.status(gang).phase == job.Phase.FROZEN)
    listed = cluster.run("mosps", "-A").stdout.splitlines()[1:]
    assert [(line.split()[0], line.split()[4]) for line in listed] == [(f"{gang}.0", "M"), (f"{gang}.1", "M")]
    cluster.run("migrate", gang, "continue")
    cluster.wait_for("both processes running again", lambda: phases(job.Phase.RUNNING)
                     and cluster.status(gang).phase == job.Phase.RUNNING)
    cluster.run("migrate", gang, "checkpoint")
    cluster.wait_for("a checkpoint of each process", lambda: cluster.status(gang).observed_checkpoint_serial == 1)
    sets = [p.checkpoint for p in cluster.status(gang).processes.values()]
    assert all(sets) and len(set(sets)) == 2  # a set of its own for each process
    assert phases(job.Phase.RUNNING)
    cluster.run("moskillall", "-9")
    cluster.wait_for("the gang to end", lambda: _finished(cluster, gang))
    done = cluster.status(gang)
    assert (done.phase, done.exit_code) == (job.Phase.FAILED, 128 + 9)
    assert done.message is not None and done.message.startswith("process ")
    assert {p.exit_code for p in done.processes.values()} == {128 + 9}


def _where(cluster: harness.Cluster) -> dict[str, str]:
    """mosps -A: each listed process's WHERE, by its id (1001.0, 1001.1, ...)."""
    return {line.split()[0]: line.split()[1] for line in cluster.run("mosps", "-A").stdout.splitlines()[1:]}


def test_migrate_one_process_of_a_gang_to_node_2(cluster: harness.Cluster) -> None:
    cluster.up(nodes=3)
    with harness.no_load_balancing(cluster):  # only the request moves a process (a noisy machine's load may not)
        _migrate_process_1_to_node_2(cluster)


def _migrate_process_1_to_node_2(cluster: harness.Cluster) -> None:
    gang = cluster.submit("-q", "-P2", "-j1-1,3-3", "testload", "-d", "0.05")  # on nodes 1 and 3

    def running(status: job.MosixJobStatus) -> bool:
        return len(status.processes) == 2 and all(p.phase == job.Phase.RUNNING for p in status.processes.values())

    cluster.wait_for("both processes to run", lambda: running(cluster.status(gang)))
    before = cluster.status(gang).processes
    assert sorted(p.node or "" for p in before.values()) == ["node1", "node3"]
    cluster.run("migrate", f"{gang}.1", "2")
    cluster.wait_for("process 1 on node 2", lambda: cluster.status(gang).processes["1"].node == "node2"
                     and running(cluster.status(gang)), timeout=90)
    after = cluster.status(gang).processes
    assert (after["1"].migrations, after["0"].migrations, after["0"].node) == (1, 0, before["0"].node)
    where = _where(cluster)
    assert where[f"{gang}.1"] == "node2"
    assert where[f"{gang}.0"] == ("here" if before["0"].node == "node1" else before["0"].node)
    refused = cluster.run("migrate", f"{gang}.5", "2", check=False)
    assert refused.returncode == 1 and "has no process 5" in refused.stderr
    cluster.run("moskillall", "-9")
    cluster.wait_for("the gang to end", lambda: _finished(cluster, gang))


def test_a_gang_process_lost_with_its_node_resumes_from_its_own_checkpoint(cluster: harness.Cluster) -> None:
    cluster.up(nodes=3)
    gang = cluster.submit("-q", "-P2", "-j1-2", f"-C{cluster.workdir}/ckpt", "testload", "-d", "0.05")
    cluster.wait_for("both processes to run", lambda: len(cluster.status(gang).processes) == 2 and all(
        p.phase == job.Phase.RUNNING for p in cluster.status(gang).processes.values()))
    cluster.run("migrate", gang, "checkpoint")
    cluster.wait_for("a checkpoint of each process", lambda: cluster.status(gang).observed_checkpoint_serial == 1)
    procs = cluster.status(gang).processes
    index = next(i for i, p in procs.items() if p.node == "node2")  # not the home node's
    assert [c.name for c in procs[index].checkpoints] == [f"{cluster.workdir}/ckpt_{index}.1"]
    cluster.kill_agent(2)
    cluster.wait_for(f"process {index} to resume elsewhere", lambda: (p := cluster.status(gang).processes[index])
                     .node in ("node1", "node3") and p.phase == job.Phase.RUNNING, timeout=120)
    seen: list[job.MosixJobStatus] = []  # the balancer may be moving either off a node the two now share

    def settled() -> bool:
        seen.append(status := cluster.status(gang))
        return status.phase == job.Phase.RUNNING and all(
            p.phase == job.Phase.RUNNING for p in status.processes.values())

    cluster.wait_for("the gang to run, wherever the balancer put its processes", settled, timeout=60)
    recovered, sibling = seen[-1].processes[index], seen[-1].processes[str(1 - int(index))]
    assert recovered.restore_from is None
    assert sibling.node in ("node1", "node3") and sibling.restore_from is None  # it ran on, never restored
    cluster.run("moskillall", "-9")
    cluster.wait_for("the gang to end", lambda: _finished(cluster, gang), timeout=90)
