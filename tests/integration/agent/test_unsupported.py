"""Unsupported features under real runc and CRIU: a job holding a perf_event counter cannot be dumped;
the refusal names it, and the job keeps running untouched."""

from __future__ import annotations

import collections.abc
import pathlib

import pytest

from mosix.agent import containers, jobs, unsupported

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]

PERF = ("testload", "--perf", "-d", "0.05")


@pytest.mark.root
def test_a_job_criu_cannot_dump_keeps_running_and_the_refusal_names_why(
    agent: containers.Manager, wait_lines: WaitLines
) -> None:
    agent.run(jobs.Job(name="perf", args=PERF))
    out = agent.stdout_path("perf")
    wait_lines(out, 5)
    with pytest.raises(unsupported.Unsupported) as refused:
        agent.checkpoint("perf", keep_running=True)
    assert refused.value.reason == "fd 3 is anon_inode:[perf_event]"
    with pytest.raises(unsupported.Unsupported, match=r"perf_event"):
        agent.freeze("perf")
    assert agent.status("perf").state == jobs.State.RUNNING
    assert agent.status("perf").checkpoints == []
    lines = wait_lines(out, len(out.read_text().splitlines()) + 5)  # it was thawed, and counts on in order
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
