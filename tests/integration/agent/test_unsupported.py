"""Unsupported features under real runc and CRIU: a job holding a perf_event counter, or a TCP connection,
cannot be dumped; the refusal names it, and the job keeps running untouched. Asked to move (two agents and
the control round over one store), a -e job holding a TCP connection stays where it is, running, marked not
migratable with the reason, in its status, an Event and mosps."""

from __future__ import annotations

import collections.abc
import pathlib
import re

import pytest

from mosix.agent import containers, daemon, jobs, unsupported
from mosix.api import job
from mosix.cli import columns, migrate, mosps
from mosix.controller import round as control
from tests.integration.agent.test_procfiles import Cluster, cluster, loop, peers  # noqa: F401  (the fixtures)

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]

PERF = ("testload", "--perf", "-d", "0.05")


# Two busybox nc's in the job's own network namespace, joined by a TCP connection on 127.0.0.1: the client
# sends a count, the server prints it to the job's stdout. runc dumps without --tcp-established.
TCP = ("sh", "-c", "sleep 3600 | nc -l -p 9000 & sleep 0.5;"
       " i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done | nc 127.0.0.1 9000")


@pytest.mark.root
@pytest.mark.parametrize(("args", "reason"), [(PERF, "fd 3 is anon_inode:[perf_event]"),
                                              (TCP, "a connected TCP socket")], ids=["perf_event", "tcp"])
def test_a_job_criu_cannot_dump_keeps_running_and_the_refusal_names_why(
    agent: containers.Manager, wait_lines: WaitLines, args: tuple[str, ...], reason: str
) -> None:
    """A checkpoint and a freeze are refused with CRIU's reason; the job, thawed, counts on in order (for
    TCP: over its connection)."""
    agent.run(jobs.Job(name="refused", args=args))
    out = agent.stdout_path("refused")
    wait_lines(out, 5)
    with pytest.raises(unsupported.Unsupported) as refused:
        agent.checkpoint("refused", keep_running=True)
    assert refused.value.reason == reason
    with pytest.raises(unsupported.Unsupported, match=re.escape(reason)):
        agent.freeze("refused")
    assert agent.status("refused").state == jobs.State.RUNNING
    assert agent.status("refused").checkpoints == []
    lines = wait_lines(out, len(out.read_text().splitlines()) + 5)
    assert lines[: len(lines) - 1] == [str(i) for i in range(len(lines) - 1)]


@pytest.mark.root
def test_a_job_without_the_feature_still_checkpoints(agent: containers.Manager, wait_lines: WaitLines) -> None:
    agent.run(jobs.Job(name="plain", args=("testload", "-d", "0.05")))
    wait_lines(agent.stdout_path("plain"), 3)
    assert agent.checkpoint("plain", keep_running=True).exists()


@pytest.mark.root
def test_a_warning_lands_on_the_jobs_stderr_after_what_it_wrote(
    agent: containers.Manager, wait_lines: WaitLines
) -> None:
    agent.run(jobs.Job(name="warned", args=("sh", "-c", "echo before >&2; sleep 0.5; echo after >&2; sleep 60")))
    err = agent.stderr_path("warned")
    wait_lines(err, 1)
    agent.warn("warned", "MOSRUN: warning\n")
    assert wait_lines(err, 3) == ["before", "MOSRUN: warning", "after"]


def test_the_reason_is_read_from_criu_dump_logs() -> None:
    log = (
        "(00.01) Error (criu/files-ext.c:94): Can't dump file 7 of that type [600] (anon anon_inode:[io_uring])\n"
        "(00.01) Error (criu/cr-dump.c:1681): Dump files (pid: 8963) failed with -1\n"
    )
    assert unsupported.reason_in(log) == "fd 7 is anon_inode:[io_uring]"
    assert unsupported.reason_in("Error (criu/cr-dump.c:2111): Dumping FAILED.\n") is None


@pytest.mark.root
def test_with_e_a_job_holding_a_tcp_connection_asked_to_move_is_marked_not_migratable(
    cluster: Cluster, wait_lines: WaitLines  # noqa: F811
) -> None:
    api, (a, b) = cluster.api, cluster.agents
    spec = job.MosixJobSpec(command=list(TCP), placement=job.Placement.NODE, node="2",
                            unsupported=job.Unsupported.CONTINUE)
    key = api.submit(spec, name="tcp-e").name
    cluster.until("the job to run on node 2", lambda: api.get_job(key).status.phase == job.Phase.RUNNING
                  and api.get_job(key).status.node == a.me.name)
    out = a.manager.stdout_path(daemon.container_name(key))
    wait_lines(out, 5)

    target, _ = migrate.resolve(api, key)
    migrate.apply(api, target, migrate.parse([key, str(b.me.number)]))  # migrate {id} 3
    cluster.until("the dump to be refused", lambda: not api.get_job(key).status.migratable)
    st = api.get_job(key).status
    assert (st.phase, st.node, st.unsupported_reason) == (job.Phase.RUNNING, a.me.name, "a connected TCP socket")
    assert st.message == "not migratable: a connected TCP socket"
    events = control.run_round(api).plan.events  # the round after the agent's patch says it, once
    assert [(e.reason, e.message) for e in events if e.job == key] == [
        ("UnsupportedFeature", "cannot be checkpointed: a connected TCP socket; continuing without migration (-e)")
    ]
    assert a.manager.status(daemon.container_name(key)).state == jobs.State.RUNNING
    assert not b.manager.names()
    lines = wait_lines(out, len(out.read_text().splitlines()) + 5)  # the connection carries on, in order
    assert lines[: len(lines) - 1] == [str(i) for i in range(len(lines) - 1)]

    names = columns.NodeNames(tuple(api.nodes()), a.me.name, "host")
    listed = mosps.render(mosps.select(api.jobs(), mosps.parse(["-A"]), names, "root"), mosps.parse(["-A"]), names)
    row, *_, note = listed.splitlines()[1:]
    assert row.split()[:5] == [key, "here", "here", "local", "N/A"]
    assert note == f"{key}: not migratable: a connected TCP socket"
