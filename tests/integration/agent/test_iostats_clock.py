"""Real runc and CRIU: the agent measures a job's I/O, and a job keeps its own clock across a
migration unless -t (host_time) gives it the hosting node's."""

from __future__ import annotations

import collections.abc
import itertools
import os
import pathlib
import time

import pytest

from mosix.agent import containers, images, iostats, jobs, nodestatus

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]
MakeAgent = collections.abc.Callable[..., containers.Manager]

MB = 1024 * 1024


class Ticks:
    """A clock the test moves by whole seconds, so the measured rate is bytes per tick, not timing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pids(agent: containers.Manager, name: str) -> list[int]:
    pid = agent.status(name).pid
    assert pid is not None
    return nodestatus.descendants(pid)


def _gated(work: str) -> tuple[str, ...]:
    """Waits for /go in its root before doing `work`, so the test takes its baseline first."""
    return ("sh", "-c", f"while [ ! -e /go ]; do sleep 0.05; done; {work}; echo done; exec sleep 1000")


def _go_and_wait(agent: containers.Manager, name: str, wait_lines: WaitLines) -> None:
    (agent.state_dir / "jobs" / name / "rootfs" / "go").touch()
    assert wait_lines(agent.stdout_path(name), 1) == ["done"]


@pytest.mark.root
def test_the_agent_measures_a_jobs_io(agent: containers.Manager, wait_lines: WaitLines) -> None:
    """testload writes 8 MiB in 64 KiB chunks in a child of the job's shell (reaped, so counted
    in the shell's /proc/PID/io); a second job only prints a few lines."""
    clock = Ticks()
    stats = iostats.Statistics(clock)
    agent.run(jobs.Job(name="heavy", args=_gated("testload -f /io --write 64 --iosize 8 -n 0")))
    agent.run(jobs.Job(name="light", args=_gated("testload -d 0 -n 20")))
    for name in ("heavy", "light"):
        assert stats.sample(name, _pids(agent, name), decay=10000) is None  # the baseline
    _go_and_wait(agent, "heavy", wait_lines)
    (agent.state_dir / "jobs" / "light" / "rootfs" / "go").touch()
    wait_lines(agent.stdout_path("light"), 21)
    clock.now = 1.0
    heavy = stats.sample("heavy", _pids(agent, "heavy"), decay=10000)
    light = stats.sample("light", _pids(agent, "light"), decay=10000)
    assert heavy is not None and light is not None
    assert 8 * 1024 <= heavy.io_kbps < 8 * 1024 + 16, heavy  # 8 MiB written, plus what the light job does
    assert 0 < light.io_kbps < 16, light  # 56 bytes of output and a few KB its shell and programs read
    assert (agent.state_dir / "jobs" / "heavy" / "rootfs" / "io").stat().st_size == 8 * MB
    clock.now = 2.0  # a second with no I/O halves the undecayed mean
    assert stats.sample("heavy", _pids(agent, "heavy"), decay=10000) == iostats.Reading(heavy.io_kbps / 2, 0.0)
    stats.clear("heavy")
    clock.now = 3.0
    assert stats.sample("heavy", _pids(agent, "heavy"), decay=10000) == iostats.Reading(0.0, 0.0)
    for name in ("heavy", "light"):
        agent.kill(name)


UPTIME = ("sh", "-c", "while :; do cat /proc/uptime; sleep 0.1; done")
AWAY_S = 5.0  # how long the job is checkpointed before it is restored


def _migrate_and_read_clock(
    make_agent: MakeAgent, wait_lines: WaitLines, tmp_path: pathlib.Path, host_time: bool
) -> tuple[list[float], str, str]:
    """Runs the uptime printer on one agent, moves it to another after AWAY_S seconds checkpointed;
    the job's CLOCK_BOOTTIME readings, and its time namespace before and after."""
    first, second = make_agent("a"), make_agent("b", images.Cache(tmp_path / "other-images"))
    first.run(jobs.Job(name="clock", args=UPTIME, host_time=host_time))
    lines = wait_lines(first.stdout_path("clock"), 10)
    ns_before = os.readlink(f"/proc/{first.status('clock').pid}/ns/time")
    ckpt = first.checkpoint("clock", keep_running=False)
    lines = first.stdout_path("clock").read_text().splitlines()
    first.remove("clock")
    time.sleep(AWAY_S)
    second.restore("clock", ckpt)
    after = wait_lines(second.stdout_path("clock"), 10)
    ns_after = os.readlink(f"/proc/{second.status('clock').pid}/ns/time")
    second.kill("clock")
    return [float(line.split()[0]) for line in lines + after], ns_before, ns_after


@pytest.mark.root
def test_a_job_keeps_its_own_clock_across_a_migration(
    make_agent: MakeAgent, wait_lines: WaitLines, tmp_path: pathlib.Path
) -> None:
    host_ns = os.readlink("/proc/self/ns/time")
    readings, ns_before, ns_after = _migrate_and_read_clock(make_agent, wait_lines, tmp_path, host_time=False)
    assert host_ns not in (ns_before, ns_after)  # its own time namespace, recreated by CRIU
    steps = [b - a for a, b in itertools.pairwise(readings)]
    assert min(steps) >= 0  # never backwards
    assert max(steps) < AWAY_S, steps  # the seconds it spent checkpointed never show on its clock


@pytest.mark.root
def test_with_t_a_job_takes_the_hosting_nodes_clock(
    make_agent: MakeAgent, wait_lines: WaitLines, tmp_path: pathlib.Path
) -> None:
    host_ns = os.readlink("/proc/self/ns/time")
    readings, ns_before, ns_after = _migrate_and_read_clock(make_agent, wait_lines, tmp_path, host_time=True)
    assert ns_before == host_ns == ns_after
    steps = [b - a for a, b in itertools.pairwise(readings)]
    assert max(steps) >= AWAY_S, steps  # the host's clock went on while the job was away
