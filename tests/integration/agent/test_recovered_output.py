"""mosrun -R: a new job goes on from another job's checkpoint set (taken by checkstop or exit). Its output is a
new job's: from 0 at its home, not from the other job's offsets (home would wait forever for bytes before them)."""

from __future__ import annotations

import collections.abc
import pathlib

import pytest

from mosix.agent import containers, jobs

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]
COUNT = ("sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")


@pytest.mark.root
def test_a_job_recovered_from_another_jobs_set_starts_its_output_afresh(agent: containers.Manager,
                                                                         wait_lines: WaitLines) -> None:
    agent.run(jobs.Job(name="old", args=COUNT))
    wait_lines(agent.stdout_path("old"), 10)
    ckpt = agent.checkpoint("old", keep_running=False)  # checkstop
    done = len(agent.stdout_path("old").read_text().splitlines())
    agent.restore("new", ckpt)
    assert agent.output_stretch("new", "stdout")[:2] == (0, 0)  # a new job's output: logical 0, file 0
    lines = wait_lines(agent.stdout_path("new"), 10)
    agent.kill("new")
    numbers = [int(n) for n in lines]
    assert numbers[0] == done and numbers == list(range(done, done + len(numbers)))  # the program goes on
    # The same job restored from its own set goes on at its own offsets, as before.
    agent.restore("old", ckpt)
    assert agent.output_stretch("old", "stdout")[0] > 0
    agent.kill("old")
