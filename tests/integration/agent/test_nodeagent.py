"""The entry script as real processes: two agents on 127.0.0.2 and 127.0.0.3, driven over their
mutual-TLS API like the control plane drives them (run, status, migrate, kill)."""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from mosix.agent import images, overlay, runc, tls
from tests.ports import free_port

REPO = pathlib.Path(__file__).resolve().parents[3]
COUNT = ["sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"]


@dataclasses.dataclass
class Agent:
    url: str
    node: str
    state: pathlib.Path
    proc: subprocess.Popen[bytes]



def wait_ready(address: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"agent on {address} exited {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        time.sleep(0.1)
    pytest.fail(f"agent on {address}:{port} never listened")


def clean_state(state: pathlib.Path, node: str) -> None:
    """Whatever the agent left: its containers (they outlive it by design), overlays, cgroup parents."""
    rt = runc.Runtime(state / "runc")
    with contextlib.suppress(runc.RuncError):
        for c in rt.list():
            with contextlib.suppress(runc.RuncError):
                rt.delete(c.id, force=True)
    for d in (state / "jobs").glob("*/rootfs"):
        overlay.unmount(d)
    # Orphaned containers may have been adopted by this process (an earlier Manager made it a
    # subreaper): reap their zombies, which would otherwise keep the cgroups busy.
    parents = [h / "mosix" / node for h in pathlib.Path("/sys/fs/cgroup").glob("*")]
    deadline = time.monotonic() + 10
    while any(p.exists() for p in parents) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        for p in parents:
            with contextlib.suppress(OSError):
                p.rmdir()
        time.sleep(0.05)


@pytest.fixture
def agents(tmp_path: pathlib.Path, image_cache: images.Cache) -> collections.abc.Iterator[dict[str, Agent]]:
    ca = tls.make_ca(tmp_path / "ca")
    started: dict[str, Agent] = {}
    try:
        for n in ("2", "3"):
            address, port = f"127.0.0.{n}", free_port(f"127.0.0.{n}")
            name = f"agent{n}-{os.getpid()}"
            state = tmp_path / f"state{n}"
            proc = subprocess.Popen(
                [sys.executable, str(REPO / "nodeagent/main.py"), "--node-name", name, "--address", address,
                 "--port", str(port), "--state-dir", str(state), "--image-cache", str(image_cache.root),
                 "--tls-dir", str(tmp_path / f"tls{n}"), "--issue-from", str(ca.key.parent), "--no-store",
                 "--metrics-port", "0"],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            started[n] = Agent(f"https://{address}:{port}", name, state, proc)
            wait_ready(address, port, proc)
        yield started
    finally:
        for a in started.values():
            a.proc.send_signal(signal.SIGTERM)
        for a in started.values():
            assert a.proc.wait(30) == 0
            clean_state(a.state, a.node)


@pytest.fixture
def control(tmp_path: pathlib.Path, agents: dict[str, Agent]) -> ssl.SSLContext:
    """The control plane's client identity, from the same cluster CA."""
    ca = tls.Identity(ca=tmp_path / "ca/ca.crt", cert=tmp_path / "ca/ca.crt", key=tmp_path / "ca/ca.key")
    return tls.client_context(tls.issue(ca, tmp_path / "tls-control", "control-plane"))


async def call(ctx: ssl.SSLContext, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, ssl=ctx) as r:
        return r.status, await r.json(content_type=None)


async def wait_state(ctx: ssl.SSLContext, url: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status, body = await call(ctx, "GET", url)
        if status == 200 and body["state"] == state:
            return dict(body)
        if time.monotonic() > deadline:
            pytest.fail(f"{url} is {body}, never {state}")
        await asyncio.sleep(0.1)


async def wait_lines(path: pathlib.Path, n: int) -> list[int]:
    deadline = time.monotonic() + 60
    while True:
        numbers = [int(x) for x in path.read_text().split()] if path.exists() else []
        if len(numbers) >= n:
            return numbers
        if time.monotonic() > deadline:
            pytest.fail(f"{path} has {len(numbers)} lines, wanted {n}")
        await asyncio.sleep(0.05)


@pytest.mark.root
async def test_agents_run_and_migrate_a_job_over_their_api(agents: dict[str, Agent], control: ssl.SSLContext) -> None:
    a, b = agents["2"], agents["3"]
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "api", "args": COUNT})
    assert status == 201, body
    out_a = a.state / "jobs/api/stdout"
    await wait_lines(out_a, 10)
    status, body = await call(control, "POST", f"{a.url}/jobs/api/migrate", {"peer": b.url})
    assert status == 200, body
    assert body["peer_status"]["state"] == "Running"
    assert (await call(control, "GET", f"{a.url}/jobs/api"))[1]["state"] == "Stopped"
    first = [int(x) for x in out_a.read_text().split()]
    second = await wait_lines(b.state / "jobs/api/stdout", 10)
    status, body = await call(control, "POST", f"{b.url}/jobs/api/kill")
    assert status == 200, body
    second = [int(x) for x in (b.state / "jobs/api/stdout").read_text().split()]
    merged = first + second
    assert merged == list(range(len(merged)))


@pytest.mark.root
async def test_agent_api_refuses_bad_input_and_exits_are_reported(agents: dict[str, Agent],
                                                                 control: ssl.SSLContext) -> None:
    a = agents["2"]
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "../etc", "args": ["true"]})
    assert status == 400
    status, body = await call(control, "POST", f"{a.url}/jobs/nope/freeze", {"reason": "Manual"})
    assert status == 409
    status, body = await call(control, "POST", f"{a.url}/jobs", {"name": "ends", "args": ["sh", "-c", "exit 4"]})
    assert status == 201, body
    body = await wait_state(control, f"{a.url}/jobs/ends", "Exited")
    assert body["exit_code"] == 4


@pytest.mark.root
async def test_checkpoint_inspect_and_restore_with_remap_over_the_api(agents: dict[str, Agent],
                                                                      control: ssl.SSLContext) -> None:
    a = agents["2"]
    status, body = await call(control, "POST", f"{a.url}/jobs",
                              {"name": "files", "args": ["testload", "-f", "/tmp/data"]})
    assert status == 201, body
    await wait_lines(a.state / "jobs/files/stdout", 5)
    status, body = await call(control, "POST", f"{a.url}/jobs/files/checkpoint", {"keep_running": False})
    assert status == 200, body
    ckpt = pathlib.Path(body["set"])
    status, body = await call(control, "POST", f"{a.url}/inspect", {"set": str(ckpt)})
    assert status == 200, body
    assert any(line.startswith("File-Descriptor #3: /tmp/data, offset=") for line in body["lines"])
    status, body = await call(control, "POST", f"{a.url}/jobs/files/restore",
                              {"set": str(ckpt), "fd_remap": {"3": "/tmp/absent"}})
    assert status == 500  # CRIU cannot open a file that is not there: refused, nothing runs
    assert (await call(control, "GET", f"{a.url}/jobs/files"))[1]["state"] != "Running"
    status, body = await call(control, "POST", f"{a.url}/jobs/files/restore", {"set": str(ckpt)})
    assert status == 200, body
    assert body["state"] == "Running"
    status, body = await call(control, "POST", f"{a.url}/jobs/files/kill")
    assert status == 200, body
