"""Post-copy migration between agents on 127.0.0.2 and 127.0.0.3: CRIU lazy pages over mutual TLS."""

from __future__ import annotations

import asyncio
import collections.abc
import os
import pathlib
import signal
import ssl
import time

import pytest
from aiohttp import web

from mosix.agent import containers, jobs, migration, pageserver, postcopy, server, tls, unsupported
from tests.ports import free_port

MakeAgent = collections.abc.Callable[..., containers.Manager]
WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]


Node = tuple[containers.Manager, str, ssl.SSLContext]


@pytest.fixture
async def pair(make_agent: MakeAgent, tmp_path: pathlib.Path) -> collections.abc.AsyncIterator[list[Node]]:
    """Agents on 127.0.0.2 and 127.0.0.3, post-copy enabled, certificates from one cluster CA."""
    pageserver.raise_pipe_max_size()
    ca = tls.make_ca(tmp_path / "ca")
    nodes: list[Node] = []
    runners: list[web.AppRunner] = []
    for n in ("2", "3"):
        address = f"127.0.0.{n}"
        ident = tls.issue(ca, tmp_path / f"tls{n}", f"node{n}", (address,))
        manager = make_agent(f"node{n}")
        postcopy.enable(manager, ident, address)
        port = free_port(address)
        client = tls.client_context(ident)
        runners.append(await server.serve(manager, address, port, tls.server_context(ident), client))
        nodes.append((manager, f"https://{address}:{port}", client))
    yield nodes
    for r in runners:
        await r.cleanup()


def numbers(path: pathlib.Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


@pytest.mark.root
async def test_job_with_memory_migrates_by_post_copy_and_its_output_continues(
        pair: list[Node], wait_lines: WaitLines) -> None:
    (a, _, a_client), (b, b_url, _) = pair
    a.run(jobs.Job(name="lazy", args=("testload", "-m", "64", "-d", "0.05")))
    await asyncio.to_thread(wait_lines, a.stdout_path("lazy"), 5)
    result = await migration.migrate(a, "lazy", b_url, a_client, lazy=True)
    assert result.peer_status["state"] == "Running"
    assert result.total_seconds is not None and result.total_seconds >= result.frozen_seconds
    assert a.status("lazy").state == jobs.State.STOPPED  # every page crossed: the source let go
    assert a.runtime.list() == []
    assert result.bytes_sent < 32 * 2**20  # the 64 MiB stayed out of the set: it came lazily
    seg = len(a.stdout_path("lazy").read_text().splitlines())
    await asyncio.to_thread(wait_lines, b.stdout_path("lazy"), 20)
    assert b.status("lazy").state == jobs.State.RUNNING
    b.kill("lazy")
    merged = numbers(a.stdout_path("lazy"))[:seg] + numbers(b.stdout_path("lazy"))
    assert merged == list(range(len(merged)))  # every line once, in order


@pytest.mark.root
async def test_refused_post_copy_thaws_the_job_on_the_source(pair: list[Node], wait_lines: WaitLines) -> None:
    """The peer refuses after the lazy dump (it runs a job of that name): CRIU's dump is made to fail
    and resumes the frozen processes, so the job runs on with its output whole."""
    (a, _, a_client), (b, b_url, _) = pair
    b.run(jobs.Job(name="stay", args=("sleep", "1000")))
    a.run(jobs.Job(name="stay", args=("testload", "-m", "16", "-d", "0.05")))
    await asyncio.to_thread(wait_lines, a.stdout_path("stay"), 5)
    with pytest.raises(migration.MigrationFailed):
        await migration.migrate(a, "stay", b_url, a_client, lazy=True)
    assert a.status("stay").state == jobs.State.RUNNING
    assert a.runtime.state("stay").status == "running"
    n = len(a.stdout_path("stay").read_text().splitlines())
    await asyncio.to_thread(wait_lines, a.stdout_path("stay"), n + 10)
    a.kill("stay")
    got = numbers(a.stdout_path("stay"))
    assert got == list(range(len(got)))


@pytest.mark.root
async def test_page_stream_needs_a_cluster_certificate(pair: list[Node], wait_lines: WaitLines,
                                                       tmp_path: pathlib.Path) -> None:
    """A lazy-pages client whose certificate is not from the cluster CA gets no page: the source's
    page server refuses it, CRIU's dump fails and thaws the job, which runs on with its output whole.
    (The client trusts the real CA, so it is the source's check of the client that says no.)"""
    (a, _, a_client), (b, b_url, _) = pair
    rogue = tls.issue(tls.make_ca(tmp_path / "rogue-ca"), tmp_path / "rogue", "node3", ("127.0.0.3",))
    postcopy.enable(b, tls.Identity(ca=tmp_path / "ca" / "ca.crt", cert=rogue.cert, key=rogue.key), "127.0.0.3")
    a.run(jobs.Job(name="guard", args=("testload", "-m", "16", "-d", "0.05")))
    await asyncio.to_thread(wait_lines, a.stdout_path("guard"), 5)
    with pytest.raises(migration.MigrationFailed):
        await migration.migrate(a, "guard", b_url, a_client, lazy=True)
    assert a.status("guard").state == jobs.State.RUNNING
    n = len(a.stdout_path("guard").read_text().splitlines())
    await asyncio.to_thread(wait_lines, a.stdout_path("guard"), n + 10)
    a.kill("guard")
    got = numbers(a.stdout_path("guard"))
    assert got == list(range(len(got)))
    assert b.runtime.list() == []  # nothing of the job runs on the peer


@pytest.mark.root
async def test_a_job_criu_cannot_dump_is_named_unsupported_by_post_copy_too(pair: list[Node],
                                                                            wait_lines: WaitLines) -> None:
    """The lazy dump meets the same refusal as a stop-and-copy one: the reason comes back, the job runs on."""
    (a, _, a_client), (_, b_url, _) = pair
    a.run(jobs.Job(name="perf", args=("testload", "--perf", "-m", "16", "-d", "0.05")))
    await asyncio.to_thread(wait_lines, a.stdout_path("perf"), 5)
    with pytest.raises(unsupported.Unsupported, match=r"perf_event"):
        await migration.migrate(a, "perf", b_url, a_client, lazy=True)
    assert a.runtime.state("perf").status == "running"
    n = len(a.stdout_path("perf").read_text().splitlines())
    got = await asyncio.to_thread(wait_lines, a.stdout_path("perf"), n + 5)
    assert got[: n + 4] == [str(i) for i in range(n + 4)]


def _lazy_pages_daemon(state_dir: pathlib.Path) -> int | None:
    """The pid of the `criu lazy-pages` daemon serving an incoming post-copy under state_dir, if one runs."""
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lazy-pages" in args and any(bytes(state_dir) in a for a in args):
            return int(cmdline.parent.name)
    return None


@pytest.mark.root
async def test_a_page_stream_broken_after_the_peer_runs_the_job_rolls_back_to_the_source(
        pair: list[Node], wait_lines: WaitLines) -> None:
    """The peer runs the job, pages still coming, when its lazy-pages daemon dies (kill -9): the source's
    processes, frozen with all their memory until the last page is across, are thawed and run on; the
    peer's copy, which can never get its missing pages, is removed with the lines it printed (the source
    prints them again)."""
    (a, _, a_client), (b, b_url, _) = pair
    a.run(jobs.Job(name="broken", args=("testload", "-m", "1024", "-d", "0.05")))
    await asyncio.to_thread(wait_lines, a.stdout_path("broken"), 5)
    moving = asyncio.create_task(migration.migrate(a, "broken", b_url, a_client, lazy=True))

    def kill_the_daemon_once_the_peer_runs_the_job() -> None:
        deadline = time.monotonic() + 60
        while not ("broken" in b.names() and b.status("broken").state == jobs.State.RUNNING):
            assert time.monotonic() < deadline and not moving.done(), "the peer never ran the job"
            time.sleep(0.005)
        daemon = _lazy_pages_daemon(b.state_dir)
        assert daemon is not None, "every page came before the daemon could be killed"
        os.kill(daemon, signal.SIGKILL)

    await asyncio.to_thread(kill_the_daemon_once_the_peer_runs_the_job)
    with pytest.raises(migration.MigrationFailed, match="page stream broke"):
        await moving
    assert a.status("broken").state == jobs.State.RUNNING
    n = len(a.stdout_path("broken").read_text().splitlines())
    await asyncio.to_thread(wait_lines, a.stdout_path("broken"), n + 10)
    a.kill("broken")
    got = numbers(a.stdout_path("broken"))
    assert got == list(range(len(got)))  # the source's own output runs on from where it froze
    assert b.runtime.list() == [] and "broken" not in b.names()  # the peer's copy is gone, and what it printed
