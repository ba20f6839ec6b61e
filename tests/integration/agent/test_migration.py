"""Agents on 127.0.0.2, 127.0.0.3 (and 127.0.0.4) with mutual TLS: real stop-and-copy migrations, and refusals."""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import os
import pathlib
import signal
import ssl
import stat

import aiohttp
import pytest
from aiohttp import web

from mosix.agent import containers, jobs, metrics, migration, pageserver, server, tls, transfer
from tests.ports import free_port

MakeAgent = collections.abc.Callable[..., containers.Manager]
WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]
COUNT = ("sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")


@dataclasses.dataclass
class Node:
    manager: containers.Manager
    url: str
    client: ssl.SSLContext


@pytest.fixture
def cluster_size() -> int:
    """How many agents `cluster` starts; a test asks for more with @pytest.mark.parametrize("cluster_size", [3])."""
    return 2


@pytest.fixture
async def cluster(make_agent: MakeAgent, ca: tls.Identity, tmp_path: pathlib.Path,
                  cluster_size: int) -> collections.abc.AsyncIterator[dict[str, Node]]:
    """Agents on 127.0.0.2, 127.0.0.3 (...), keyed "2", "3" (...), each serving its API with its own certificate."""
    pageserver.raise_pipe_max_size()
    nodes: dict[str, Node] = {}
    runners: list[web.AppRunner] = []
    for n in (str(i) for i in range(2, 2 + cluster_size)):
        address = f"127.0.0.{n}"
        ident = tls.issue(ca, tmp_path / f"tls{n}", f"node{n}", (address,))
        manager = make_agent(f"node{n}")
        pageserver.enable(manager, ident, address)  # as the agent does at start: memory streams to the peer
        port = free_port(address)
        runners.append(await server.serve(manager, address, port, tls.server_context(ident)))
        nodes[n] = Node(manager, f"https://{address}:{port}", tls.client_context(ident))
    yield nodes
    for r in runners:
        await r.cleanup()


def all_numbers(*files: pathlib.Path) -> list[int]:
    out: list[int] = []
    for f in files:
        out += [int(x) for x in f.read_text().split()]
    return out


async def runs_on_whole(manager: containers.Manager, name: str, wait_lines: WaitLines, more: int = 10) -> None:
    """The job runs on here (`more` lines after now); then, killed, its output is every number once, in order."""
    n = len(manager.stdout_path(name).read_text().splitlines())
    await asyncio.to_thread(wait_lines, manager.stdout_path(name), n + more)
    manager.kill(name)
    numbers = all_numbers(manager.stdout_path(name))
    assert numbers == list(range(len(numbers)))


@pytest.mark.root
async def test_tls_files_are_root_only(ca: tls.Identity, tmp_path: pathlib.Path) -> None:
    ident = tls.issue(ca, tmp_path / "tlsx", "nodex", ("127.0.0.9",))
    for p in (ca.key, ca.cert, ident.key, ident.cert):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


@pytest.mark.root
@pytest.mark.parametrize("cluster_size", [3])
async def test_counting_job_goes_round_three_agents_and_back(cluster: dict[str, Node], wait_lines: WaitLines) -> None:
    """The issue's 1→2→3→1: 127.0.0.2 → .3 → .4 → .2, and the job's output has every number once."""
    a, b, c = cluster["2"], cluster["3"], cluster["4"]
    a.manager.run(jobs.Job(name="mig", args=COUNT))
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("mig"), 10)
    first = await migration.migrate(a.manager, "mig", b.url, a.client)
    assert first.peer_status["state"] == "Running"
    assert a.manager.status("mig").state == jobs.State.STOPPED
    seg1 = len(a.manager.stdout_path("mig").read_text().splitlines())  # final: the job left
    await asyncio.to_thread(wait_lines, b.manager.stdout_path("mig"), 10)
    second = await migration.migrate(b.manager, "mig", c.url, b.client)
    assert second.peer_status["state"] == "Running"
    assert b.manager.status("mig").state == jobs.State.STOPPED
    await asyncio.to_thread(wait_lines, c.manager.stdout_path("mig"), 10)
    await migration.migrate(c.manager, "mig", a.url, c.client)
    assert c.manager.status("mig").state == jobs.State.STOPPED
    assert a.manager.status("mig").state == jobs.State.RUNNING
    # The agent forgets a job that left once home has its output; one that came back meanwhile stays.
    assert not a.manager.remove_stopped("mig")
    assert a.manager.status("mig").state == jobs.State.RUNNING
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("mig"), seg1 + 10)
    a.manager.kill("mig")
    # a's file holds the first and fourth stretches, b's the second, c's the third: every number once, in order.
    a_numbers = all_numbers(a.manager.stdout_path("mig"))
    b_numbers = all_numbers(b.manager.stdout_path("mig"))
    c_numbers = all_numbers(c.manager.stdout_path("mig"))
    merged = a_numbers[:seg1] + b_numbers + c_numbers + a_numbers[seg1:]
    assert merged == list(range(len(merged)))
    assert len(b_numbers) >= 10 and len(c_numbers) >= 10 and len(a_numbers) >= seg1 + 10
    for left in (b, c):
        assert left.manager.remove_stopped("mig") and "mig" not in left.manager.names()  # it left for good


@pytest.mark.root
async def test_unauthenticated_client_is_refused(cluster: dict[str, Node], ca: tls.Identity, wait_lines: WaitLines,
                                                 tmp_path: pathlib.Path) -> None:
    """No client certificate, or one of a foreign CA: refused, and a whole, correctly hashed set sent that way
    restores nothing; the same set from a cluster certificate does."""
    a, b = cluster["2"], cluster["3"]
    stream = await _set_stream(a, wait_lines)
    anonymous = ssl.create_default_context(cafile=str(ca.cert))  # trusts the server, shows no certificate
    foreign = tls.issue(tls.make_ca(tmp_path / "other-ca"), tmp_path / "tls-foreign", "node2", ("127.0.0.2",))
    forged = ssl.create_default_context(cafile=str(ca.cert))
    forged.load_cert_chain(foreign.cert, foreign.key)  # a certificate, even of a node's name, but not the cluster's
    for context in (anonymous, forged):
        async with aiohttp.ClientSession() as session:
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
                async with session.post(f"{b.url}/migrations", data=stream, ssl=context,
                                        headers={transfer.JOB_HEADER: "evil"}) as resp:
                    await resp.read()
        assert b.manager.names() == []
        assert b.manager.runtime.list() == []
    incoming = b.manager.state_dir / "incoming"
    assert not incoming.exists() or not any(incoming.iterdir())  # nothing was received
    # The stream is a good one: from a cluster certificate it is restored (the refusals were the check).
    async with aiohttp.ClientSession() as session, session.post(
            f"{b.url}/migrations", data=stream, headers={transfer.JOB_HEADER: "evil"}, ssl=a.client) as resp:
        assert resp.status == 200, await resp.text()
    assert b.manager.status("evil").state == jobs.State.RUNNING
    b.manager.kill("evil")


async def _set_stream(a: Node, wait_lines: WaitLines) -> bytes:
    """What a migration sends for a real job ("evil", stopped into a checkpoint set): the set's whole stream."""
    a.manager.run(jobs.Job(name="evil", args=COUNT))
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("evil"), 3)
    sender = transfer.Sender(a.manager.checkpoint("evil", keep_running=False))
    stream = bytearray()
    while chunk := sender.read():
        stream += chunk
    sender.close()
    return bytes(stream)


@pytest.mark.root
async def test_tampered_stream_is_refused_and_the_job_rolls_back(cluster: dict[str, Node], wait_lines: WaitLines,
                                                                 tmp_path: pathlib.Path) -> None:
    a, b = cluster["2"], cluster["3"]
    # A real set, then tampered with (one byte flipped) and truncated on the way.
    stream = await _set_stream(a, wait_lines)
    tampered = bytearray(stream)
    tampered[len(stream) // 2] ^= 0x01
    for body in (bytes(tampered), stream[:-1000]):
        async with aiohttp.ClientSession() as session, session.post(
                f"{b.url}/migrations", data=body, headers={transfer.JOB_HEADER: "evil"}, ssl=a.client) as resp:
            assert resp.status == 400
            assert "digest mismatch" in (await resp.json())["error"]
    assert b.manager.names() == []
    assert not any((b.manager.state_dir / "incoming").iterdir())
    # The untouched stream is accepted: the refusals above were the check, not a broken sender.
    async with aiohttp.ClientSession() as session, session.post(
            f"{b.url}/migrations", data=stream, headers={transfer.JOB_HEADER: "evil"}, ssl=a.client) as resp:
        assert resp.status == 200, await resp.text()
    b.manager.kill("evil")
    # A migration the peer refuses (here: it already runs a job of that name) rolls back to the source.
    b.manager.run(jobs.Job(name="roll", args=("sleep", "1000")))
    a.manager.run(jobs.Job(name="roll", args=COUNT))
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("roll"), 10)
    with pytest.raises(migration.MigrationFailed) as refused:
        await migration.migrate(a.manager, "roll", b.url, a.client)
    assert metrics.failure_cause(refused.value) == "refused"  # the peer answered 409
    assert a.manager.status("roll").state == jobs.State.RUNNING
    await runs_on_whole(a.manager, "roll", wait_lines)


@pytest.mark.root
async def test_peer_dying_mid_transfer_rolls_back(make_agent: MakeAgent, ca: tls.Identity, tmp_path: pathlib.Path,
                                                  wait_lines: WaitLines) -> None:
    """The peer accepts the TLS connection, reads part of the set and dies: the job runs on here."""
    source = make_agent("src")
    ident = tls.issue(ca, tmp_path / "tls-src", "src", ("127.0.0.2",))
    peer_ident = tls.issue(ca, tmp_path / "tls-dead", "dead", ("127.0.0.5",))
    received = 0

    async def die_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        while received < 32768:
            chunk = await reader.read(4096)
            if not chunk:
                break
            received += len(chunk)
        writer.transport.abort()  # like kill -9: no answer, connection gone

    port = free_port("127.0.0.5")
    dead = await asyncio.start_server(die_midway, "127.0.0.5", port, ssl=tls.server_context(peer_ident))
    try:
        source.run(jobs.Job(name="stay", args=COUNT))
        await asyncio.to_thread(wait_lines, source.stdout_path("stay"), 10)
        with pytest.raises(migration.MigrationFailed) as failed:
            await migration.migrate(source, "stay", f"https://127.0.0.5:{port}", tls.client_context(ident))
    finally:
        dead.close()
        await dead.wait_closed()
    assert received >= 32768  # it really died mid-transfer
    assert metrics.failure_cause(failed.value) == "transfer"
    assert source.status("stay").state == jobs.State.RUNNING
    await runs_on_whole(source, "stay", wait_lines)


@pytest.mark.root
async def test_unreachable_peer_leaves_the_job_running(cluster: dict[str, Node], wait_lines: WaitLines) -> None:
    """Nobody listens at the peer's address: the dump begun meanwhile is dropped and the job runs on here."""
    a = cluster["2"]
    a.manager.run(jobs.Job(name="here", args=COUNT))
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("here"), 5)
    with pytest.raises(migration.MigrationFailed) as failed:
        await migration.migrate(a.manager, "here", f"https://127.0.0.6:{free_port('127.0.0.6')}", a.client)
    assert metrics.failure_cause(failed.value) == "peer-unreachable"
    assert a.manager.status("here").state == jobs.State.RUNNING
    await runs_on_whole(a.manager, "here", wait_lines, more=5)


@pytest.mark.root
async def test_lost_answer_is_not_rolled_back_twice(cluster: dict[str, Node], wait_lines: WaitLines) -> None:
    """The peer restores the job but its answer never arrives: the source asks, and does not restore too."""
    a, b = cluster["2"], cluster["3"]
    host, port = b.url.removeprefix("https://").split(":")
    # A set is larger, even without its memory (that streams to the peer's page server, not through
    # here): the first connection to send more than this many bytes up has its answer dropped.
    cut = 30_000
    connections = 0
    dropped = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        sent = 0
        upstream_r, upstream_w = await asyncio.open_connection(host, int(port))

        async def up() -> None:
            nonlocal sent
            while data := await reader.read(65536):
                sent += len(data)
                upstream_w.write(data)
                await upstream_w.drain()

        async def down() -> None:
            nonlocal dropped
            while data := await upstream_r.read(65536):
                if not dropped and sent > cut:
                    dropped = True
                    writer.transport.abort()  # the answer is lost on the way
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        writer.transport.abort()
        upstream_w.transport.abort()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    proxy_port = free_port(host)
    proxy = await asyncio.start_server(handle, host, proxy_port)
    try:
        a.manager.run(jobs.Job(name="lost", args=COUNT))
        await asyncio.to_thread(wait_lines, a.manager.stdout_path("lost"), 10)
        result = await asyncio.wait_for(
            migration.migrate(a.manager, "lost", f"https://{host}:{proxy_port}", a.client), 120)
    finally:
        proxy.close()
        await asyncio.wait_for(proxy.wait_closed(), 30)
    assert dropped
    # the page server's opening and the migration on one kept-alive connection (its answer cut), then
    # the source's question on a new one
    assert connections == 2
    assert result.bytes_sent > cut
    assert result.peer_status["state"] == "Running"
    assert a.manager.status("lost").state == jobs.State.STOPPED  # not restored here as well
    assert a.manager.runtime.list() == []
    await asyncio.to_thread(wait_lines, b.manager.stdout_path("lost"), 10)
    b.manager.kill("lost")
    merged = all_numbers(a.manager.stdout_path("lost"), b.manager.stdout_path("lost"))
    assert merged == list(range(len(merged)))


# --- the page stream: memory goes straight into the peer's CRIU page server -------------------------------

MEMORY = ("testload", "-m", "64", "-d", "0.05")  # 64 MiB resident, a numbered line every 0.05 s


@pytest.mark.root
async def test_stop_and_copy_streams_memory_to_the_peer_not_the_disk(cluster: dict[str, Node],
                                                                     wait_lines: WaitLines) -> None:
    a, b = cluster["2"], cluster["3"]
    dumped: list[list[str]] = []
    checkpoint = a.manager.runtime.checkpoint

    def watch(container_id: str, image_path: pathlib.Path, *args: object, **kwargs: object) -> None:
        checkpoint(container_id, image_path, *args, **kwargs)  # type: ignore[arg-type]
        dumped.append(sorted(p.name for p in image_path.iterdir()))  # what the dump left on the source's disk

    a.manager.runtime.checkpoint = watch  # type: ignore[method-assign]
    a.manager.run(jobs.Job(name="mem", args=MEMORY))
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("mem"), 10)
    result = await migration.migrate(a.manager, "mem", b.url, a.client)
    assert result.peer_status["state"] == "Running"
    assert len(dumped) == 1 and "inventory.img" in dumped[0]
    assert not [n for n in dumped[0] if n.startswith(("pages-", "pagemap-"))]  # no memory on the source's disk
    assert result.bytes_sent < 8 << 20  # the API carried the small images and the layer, not 64 MiB
    assert a.manager.status("mem").state == jobs.State.STOPPED
    assert a.manager.runtime.list() == []  # killed here once the peer ran it
    assert not (a.manager.state_dir / "jobs" / "mem" / "upper").exists()  # and its layer torn down
    assert pageserver.open_sinks(b.manager) == []
    seg1 = len(a.manager.stdout_path("mem").read_text().splitlines())
    await asyncio.to_thread(wait_lines, b.manager.stdout_path("mem"), 10)  # its memory came along: it runs on
    b.manager.kill("mem")
    merged = all_numbers(a.manager.stdout_path("mem"))[:seg1] + all_numbers(b.manager.stdout_path("mem"))
    assert merged == list(range(len(merged)))


@pytest.mark.root
async def test_a_peer_without_page_servers_gets_the_whole_set(cluster: dict[str, Node], make_agent: MakeAgent,
                                                              ca: tls.Identity, tmp_path: pathlib.Path,
                                                              wait_lines: WaitLines) -> None:
    """The source starts its dump while the peer opens a page server; a peer that has none (404) makes it
    thaw the job and send the whole set, memory included, instead."""
    a = cluster["2"]
    old = make_agent("node4")  # page streams never enabled: no page servers
    ident = tls.issue(ca, tmp_path / "tls4", "node4", ("127.0.0.4",))
    port = free_port("127.0.0.4")
    runner = await server.serve(old, "127.0.0.4", port, tls.server_context(ident))
    try:
        a.manager.run(jobs.Job(name="plain", args=COUNT))
        await asyncio.to_thread(wait_lines, a.manager.stdout_path("plain"), 10)
        result = await migration.migrate(a.manager, "plain", f"https://127.0.0.4:{port}", a.client)
        assert result.peer_status["state"] == "Running"
        assert a.manager.status("plain").state == jobs.State.STOPPED
        assert a.manager.runtime.list() == []
        await asyncio.to_thread(wait_lines, old.stdout_path("plain"), 10)
        old.kill("plain")
    finally:
        await runner.cleanup()
    merged = all_numbers(a.manager.stdout_path("plain"), old.stdout_path("plain"))
    assert merged == list(range(len(merged)))


async def _open_sink(node: Node, job: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{node.url}/migrations/page-servers", json={"job": job}, ssl=node.client) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, str] = await resp.json()
        return body


@pytest.mark.root
async def test_unauthenticated_page_stream_is_refused_and_nothing_restores(
        cluster: dict[str, Node], ca: tls.Identity, wait_lines: WaitLines, tmp_path: pathlib.Path) -> None:
    a, b = cluster["2"], cluster["3"]
    # A whole, correctly hashed set to send after each refused page stream.
    stream = await _set_stream(a, wait_lines)
    foreign = tls.issue(tls.make_ca(tmp_path / "other-ca"), tmp_path / "tls-foreign", "foreign", ("127.0.0.2",))
    anonymous = ssl.create_default_context(cafile=str(ca.cert))  # trusts the page server, shows no certificate
    forged = ssl.create_default_context(cafile=str(ca.cert))
    forged.load_cert_chain(foreign.cert, foreign.key)  # a certificate, but not from the cluster CA
    for context in (anonymous, forged, None):
        sink = await _open_sink(b, "evil")
        host, port = sink["page_server"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), ssl=context,
                                                       server_hostname=host if context else None)
        with contextlib.suppress(OSError, ssl.SSLError):
            writer.write(b"\x01" * 4096)  # a pages request CRIU would act on, were it let in
            await writer.drain()
            assert (await reader.read(100))[:1] in (b"", b"\x15")  # closed, or a TLS alert
        writer.close()
        async with aiohttp.ClientSession() as session, session.post(
                f"{b.url}/migrations", data=stream, ssl=a.client,
                headers={transfer.JOB_HEADER: "evil", migration.PAGES_HEADER: sink["id"]}) as resp:
            assert resp.status == 400
            assert "page server" in (await resp.json())["error"]
        assert b.manager.names() == []
        assert pageserver.open_sinks(b.manager) == []
    assert not any((b.manager.state_dir / "incoming").iterdir())  # nothing received is left


@pytest.mark.root
async def test_page_server_dying_mid_dump_rolls_back(cluster: dict[str, Node], wait_lines: WaitLines) -> None:
    """kill -9 of the peer's page server while the memory streams in: the job thaws on the source."""
    a, b = cluster["2"], cluster["3"]
    a.manager.run(jobs.Job(name="stay", args=("testload", "-m", "512", "-d", "0.05")))
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("stay"), 10)
    killed: list[int] = []

    async def kill_when_pages_flow() -> None:
        while True:
            for sink in pageserver.open_sinks(b.manager):
                if sum(p.stat().st_size for p in sink.dir.glob("pages-*.img")) > 4 << 20:
                    os.kill(sink.pid, signal.SIGKILL)
                    killed.append(sink.pid)
                    return
            await asyncio.sleep(0.005)

    killer = asyncio.create_task(kill_when_pages_flow())
    with pytest.raises(migration.MigrationFailed, match="page server") as failed:
        await migration.migrate(a.manager, "stay", b.url, a.client)
    killer.cancel()
    assert metrics.failure_cause(failed.value) == "transfer"
    assert killed  # it really died mid-dump, with pages arriving
    assert a.manager.status("stay").state == jobs.State.RUNNING
    n = len(a.manager.stdout_path("stay").read_text().splitlines())
    await asyncio.to_thread(wait_lines, a.manager.stdout_path("stay"), n + 10)  # thawed: it goes on here
    assert b.manager.names() == []
    assert pageserver.open_sinks(b.manager) == []
    a.manager.kill("stay")
    numbers = all_numbers(a.manager.stdout_path("stay"))
    assert numbers == list(range(len(numbers)))
