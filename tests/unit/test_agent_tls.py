"""The agent API's TLS server side (tls.server_context under asyncio, as aiohttp serves it): peers without
the cluster's certificate are refused and logged; a readiness probe's bare connect is not. Real TLS on
127.0.0.1, an ephemeral port."""

from __future__ import annotations

import asyncio
import collections.abc
import logging
import pathlib
import socket
import ssl

import pytest

from mosix.agent import tls


@pytest.fixture
def ca(tmp_path: pathlib.Path) -> tls.Identity:
    return tls.make_ca(tmp_path / "ca")


@pytest.fixture
async def server(ca: tls.Identity, tmp_path: pathlib.Path) -> collections.abc.AsyncIterator[int]:
    """An asyncio TLS server with the agent's server context, answering b"ok" to every client it accepts."""

    async def hello(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    ident = tls.issue(ca, tmp_path / "agent", "node1", ("127.0.0.1",))
    srv = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=tls.server_context(ident))
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


async def _talk(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    try:
        return await reader.read()
    finally:
        writer.close()


async def test_peers_without_the_cluster_certificate_are_refused_and_logged(
        server: int, ca: tls.Identity, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=tls.log.name)
    member = tls.issue(ca, tmp_path / "member", "node2", ("127.0.0.2",))
    assert await _talk(server, tls.client_context(member)) == b"ok"
    await asyncio.to_thread(lambda: socket.create_connection(("127.0.0.1", server)).close())  # a TCP probe
    anonymous = ssl.create_default_context(cafile=str(ca.cert))
    stranger = tls.issue(tls.make_ca(tmp_path / "other-ca"), tmp_path / "stranger", "node2", ("127.0.0.2",))
    forged = ssl.create_default_context(cafile=str(ca.cert))  # trusts the agent, shows a foreign CA's certificate
    forged.load_cert_chain(stranger.cert, stranger.key)
    for context in (anonymous, forged):
        try:
            answer = await _talk(server, context)
        except (ssl.SSLError, ConnectionError):  # TLS 1.3: the client may learn of it at its first read, or not
            answer = b""
        assert answer == b""
    for _ in range(200):
        if len(caplog.records) >= 2:
            break
        await asyncio.sleep(0.01)
    assert [r.getMessage() for r in caplog.records] == [
        "refused a TLS peer: PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "refused a TLS peer: unable to get local issuer certificate"]
