"""Jobs survive a crash of their agent: the keeper restarts it and it adopts them (real runc and CRIU, as root).

The agents are the entry script as real processes (nodeagent/main.py, which runs the agent under its
keeper); `kill -9` hits the agent alone, as a crash would, and the keeper starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import ssl
import time

import pytest

from mosix.agent import runc
from tests.integration.agent import test_nodeagent
from tests.integration.agent.test_nodeagent import COUNT, Agent, call, wait_lines, wait_state

agents = test_nodeagent.agents  # the same fixtures: two agents under their keepers, and a control-plane identity
control = test_nodeagent.control

FLOOD = ["sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); done"]  # fills the pipe while the agent is away


def children(pid: int) -> list[int]:
    text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def agent_pid(keeper: int) -> int | None:
    """The keeper's child that is the agent (its other children are orphaned containers)."""
    for child in children(keeper):
        with contextlib.suppress(OSError):
            if b"mosix.agent" in pathlib.Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


async def crash(a: Agent) -> None:
    """kill -9 the agent (not its keeper); return once the keeper has started it again and it listens."""
    old = agent_pid(a.proc.pid)
    assert old is not None, "no agent under the keeper"
    os.kill(old, signal.SIGKILL)
    host, port = a.url.removeprefix("https://").split(":")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert a.proc.poll() is None, "the keeper died with its agent"
        new = agent_pid(a.proc.pid)
        if new not in (None, old):
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                return
        await asyncio.sleep(0.1)
    pytest.fail("the keeper did not start the agent again")


def numbers(path: pathlib.Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def containers_of(a: Agent) -> list[runc.State]:
    return runc.Runtime(a.state / "runc").list()


@pytest.mark.root
async def test_a_counting_job_runs_on_through_a_crash_of_its_agent(agents: dict[str, Agent],
                                                                     control: ssl.SSLContext) -> None:
    a = agents["2"]
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "count", "args": COUNT})
    assert status == 201, body
    pid = body["pid"]
    out = a.state / "jobs/count/stdout"
    await wait_lines(out, 10)
    await crash(a)
    status, body = await call(control, "GET", f"{a.url}/jobs/count")
    assert (status, body["state"], body["pid"]) == (200, "Running", pid)  # the same process: adopted
    assert [(c.id, c.pid) for c in containers_of(a)] == [("count", pid)]  # and no second copy
    seen = len(numbers(out))
    await wait_lines(out, seen + 20)  # it goes on, pumped by the new agent
    status, body = await call(control, "POST", f"{a.url}/jobs/count/kill")
    assert status == 200, body
    got = numbers(out)
    assert got == list(range(len(got)))


@pytest.mark.root
async def test_no_output_is_lost_or_repeated_by_kills_at_any_instant(agents: dict[str, Agent],
                                                                      control: ssl.SSLContext) -> None:
    a = agents["2"]
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "flood", "args": FLOOD})
    assert status == 201, body
    out = a.state / "jobs/flood/stdout"
    for _ in range(5):  # the pump is busy splicing: each kill lands between two splices, or inside one
        await wait_lines(out, len(numbers(out)) + 1000)
        await crash(a)
    await wait_lines(out, len(numbers(out)) + 1000)
    status, body = await call(control, "POST", f"{a.url}/jobs/flood/kill")
    assert status == 200, body
    text = out.read_text()
    got = [int(x) for x in text.split()]
    assert got == list(range(len(got)))
    assert text.endswith("\n")  # each echo is one write: no line cut in two


@pytest.mark.root
async def test_a_job_that_ends_while_its_agent_is_down_gets_its_real_exit_code(agents: dict[str, Agent],
                                                                                 control: ssl.SSLContext) -> None:
    a = agents["2"]
    script = "echo 1; sleep 2; echo 2; exit 5"  # its "2" is written while its agent is down
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "ends", "args": ["sh", "-c", script]})
    assert status == 201, body
    pid = body["pid"]
    out = a.state / "jobs/ends/stdout"
    await wait_lines(out, 1)
    agent = agent_pid(a.proc.pid)
    assert agent is not None
    os.kill(a.proc.pid, signal.SIGSTOP)  # the keeper holds still: the agent stays down until the job ended
    try:
        os.kill(agent, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z":
            assert time.monotonic() < deadline, "the job did not end"
            await asyncio.sleep(0.05)
        assert pid in children(a.proc.pid)  # orphaned onto the keeper, which reaps it once it runs again
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    await crash_restarted(a, agent)
    body = await wait_state(control, f"{a.url}/jobs/ends", "Exited")
    assert body["exit_code"] == 5
    assert out.read_text() == "1\n2\n"
    assert containers_of(a) == []


async def crash_restarted(a: Agent, old: int) -> None:
    host, port = a.url.removeprefix("https://").split(":")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if agent_pid(a.proc.pid) not in (None, old):
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                return
        await asyncio.sleep(0.1)
    pytest.fail("the keeper did not start the agent again")


@pytest.mark.root
async def test_an_adopted_job_freezes_continues_and_migrates(agents: dict[str, Agent],
                                                             control: ssl.SSLContext) -> None:
    a, b = agents["2"], agents["3"]
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "moves", "args": COUNT})
    assert status == 201, body
    out_a = a.state / "jobs/moves/stdout"
    await wait_lines(out_a, 5)
    await crash(a)
    status, body = await call(control, "POST", f"{a.url}/jobs/moves/freeze", {"reason": "Manual"})
    assert status == 200, body
    assert (await call(control, "GET", f"{a.url}/jobs/moves"))[1]["state"] == "Frozen"
    await crash(a)  # a frozen job is adopted as frozen
    assert (await call(control, "GET", f"{a.url}/jobs/moves"))[1]["state"] == "Frozen"
    status, body = await call(control, "POST", f"{a.url}/jobs/moves/continue")
    assert status == 200, body
    await wait_lines(out_a, len(numbers(out_a)) + 5)
    await crash(a)
    status, body = await call(control, "POST", f"{a.url}/jobs/moves/migrate", {"peer": b.url})
    assert status == 200, body
    assert body["peer_status"]["state"] == "Running"
    out_b = b.state / "jobs/moves/stdout"
    await wait_lines(out_b, 5)
    status, body = await call(control, "POST", f"{b.url}/jobs/moves/kill")
    assert status == 200, body
    merged = numbers(out_a) + numbers(out_b)
    assert merged == list(range(len(merged)))


@pytest.mark.root
async def test_periodic_checkpoints_go_on_after_a_crash(agents: dict[str, Agent], control: ssl.SSLContext) -> None:
    a = agents["2"]
    status, body = await call(control, "POST", f"{a.url}/jobs",
                              {"name": "every", "args": COUNT, "checkpoint_every": 1.0, "max_sets": 50})
    assert status == 201, body
    await wait_lines(a.state / "jobs/every/stdout", 5)
    await crash(a)
    status, body = await call(control, "GET", f"{a.url}/jobs/every")
    before = len(body["checkpoints"])
    deadline = time.monotonic() + 60
    while len(body["checkpoints"]) < before + 2:  # written by the restarted agent's -A thread
        assert time.monotonic() < deadline, f"no periodic checkpoint after the restart: {body}"
        await asyncio.sleep(0.2)
        status, body = await call(control, "GET", f"{a.url}/jobs/every")
    assert body["state"] == "Running"
    status, body = await call(control, "POST", f"{a.url}/jobs/every/kill")
    assert status == 200, body
    got = numbers(a.state / "jobs/every/stdout")
    assert got == list(range(len(got)))


@pytest.mark.root
async def test_an_adopted_job_that_ends_later_gets_its_real_exit_code(agents: dict[str, Agent],
                                                                      control: ssl.SSLContext) -> None:
    a = agents["2"]
    script = "i=0; while [ $i -lt 200 ]; do echo $i; i=$((i+1)); sleep 0.05; done; exit 6"
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "later", "args": ["sh", "-c", script]})
    assert status == 201, body
    out = a.state / "jobs/later/stdout"
    await wait_lines(out, 5)
    await crash(a)
    assert len(numbers(out)) < 200, "the job ended before the agent came back: this tests nothing"
    body = await wait_state(control, f"{a.url}/jobs/later", "Exited")
    assert body["exit_code"] == 6  # recorded by the keeper, its parent now
    assert numbers(out) == list(range(200))
