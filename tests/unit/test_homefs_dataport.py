"""Home's data port: mutual TLS, a hello naming a served job, frames carried out in order, and every
stream ended when the port closes. Real TLS on 127.0.0.1 (an ephemeral port), real files."""

from __future__ import annotations

import collections.abc
import errno
import json
import logging
import os
import pathlib
import socket
import ssl
import time

import pytest

from mosix.agent import tls
from mosix.agent.homefs import dataport, exports, wire


@pytest.fixture
def served(tmp_path: pathlib.Path) -> exports.Exports:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"0123456789")
    e = exports.Exports()
    e.export("j", root)
    return e


@pytest.fixture
def port(served: exports.Exports,
         tmp_path: pathlib.Path) -> collections.abc.Iterator[tuple[dataport.DataPort, tls.Identity]]:
    """The data port serving job "j", and an identity from the same CA for the FUSE side."""
    ca = tls.make_ca(tmp_path / "ca")
    home = tls.issue(ca, tmp_path / "home", "home", ("127.0.0.1",))
    p = dataport.DataPort(served, tls.server_context(home), "127.0.0.1")
    p.start()
    try:
        yield p, tls.issue(ca, tmp_path / "away", "away", ("127.0.0.1",))
    finally:
        p.close()


def connect(p: dataport.DataPort, context: ssl.SSLContext, job: str) -> tuple[ssl.SSLSocket, dict[str, object]]:
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=10), server_hostname="127.0.0.1")
    sock.sendall(json.dumps({"job": job}).encode() + b"\n")
    return sock, json.loads(recv_exactly_line(sock))


def recv_exactly_line(sock: ssl.SSLSocket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        data = sock.recv(1)
        assert data, "home closed the stream"
        line += data
    return line


def recv_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        assert data, "home closed the stream"
        out += data
    return out


def answer(sock: ssl.SSLSocket) -> tuple[int, int, int, bytes]:
    rid, err, value, size = wire.REPLY.unpack(recv_exactly(sock, wire.REPLY.size))
    return rid, err, value, recv_exactly(sock, size)


def test_frames_are_carried_out_in_order_and_answered(port: tuple[dataport.DataPort, tls.Identity],
                                                      served: exports.Exports, tmp_path: pathlib.Path) -> None:
    p, away = port
    fh = served.meta("j", "open", {"path": "f", "flags": os.O_RDWR})["fh"]
    sock, hello = connect(p, tls.client_context(away), "j")
    with sock:
        assert hello == {"errno": 0}
        sock.sendall(wire.request(wire.Op.WRITE, 1, fh, 2, 3) + b"abc"  # sent at once: the read sees the write
                     + wire.request(wire.Op.READ, 2, fh, 0, 100)
                     + wire.request(wire.Op.READ, 3, 999, 0, 1)  # no such handle: its errno, the stream goes on
                     + wire.request(wire.Op.FSYNC, 4, fh, 1, 0)
                     + wire.request(wire.Op.BARRIER, 5, fh, 0, 0))
        assert [answer(sock) for _ in range(5)] == [(1, 0, 3, b""), (2, 0, 0, b"01abc56789"), (3, errno.EBADF, 0, b""),
                                                    (4, 0, 0, b""), (5, 0, 0, b"")]
    assert (tmp_path / "root" / "f").read_bytes() == b"01abc56789"


def test_a_job_not_served_here_is_refused(port: tuple[dataport.DataPort, tls.Identity]) -> None:
    p, away = port
    sock, hello = connect(p, tls.client_context(away), "nobody")
    with sock:
        assert hello["errno"] == errno.EACCES
        assert sock.recv(1) == b""  # and the stream is closed
    for garbled in (b'["j"]\n', b'{"job": 1}\n'):
        raw = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        with tls.client_context(away).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(garbled)
            assert json.loads(recv_exactly_line(sock))["errno"] == errno.EACCES


def test_a_peer_without_the_cluster_s_certificate_is_refused(port: tuple[dataport.DataPort, tls.Identity],
                                                            tmp_path: pathlib.Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Refused, and logged (by the port's thread, maybe after the client gave up); a plain TCP connect and
    close (a readiness probe) is not logged."""
    caplog.set_level(logging.WARNING, logger=dataport.log.name)
    p, _ = port
    socket.create_connection(("127.0.0.1", p.port), timeout=10).close()
    stranger_ca = tls.make_ca(tmp_path / "other-ca")
    stranger = tls.issue(stranger_ca, tmp_path / "stranger", "away", ("127.0.0.1",))
    context = tls.client_context(stranger)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # it does not even check home
    with pytest.raises((ssl.SSLError, ConnectionError)):
        connect(p, context, "j")
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no client certificate at all
    anonymous.load_verify_locations(cafile=str(port[1].ca))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        connect(p, anonymous, "j")
    deadline = time.monotonic() + 10
    while len(refused := [r.getMessage() for r in caplog.records]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(refused) == 2 and all(m.startswith("homefs data port refused 127.0.0.1: ") for m in refused)
    assert "certificate" in refused[0].lower() and "certificate" in refused[1].lower()


def test_a_frame_not_ours_ends_that_stream_only(port: tuple[dataport.DataPort, tls.Identity],
                                                served: exports.Exports) -> None:
    p, away = port
    fh = served.meta("j", "open", {"path": "f", "flags": os.O_RDONLY})["fh"]
    bad, _ = connect(p, tls.client_context(away), "j")
    good, _ = connect(p, tls.client_context(away), "j")
    with bad, good:
        bad.sendall(wire.request(wire.Op.READ, 1, fh, 0, wire.MAX_IO + 1))  # larger than any frame may be
        assert bad.recv(1) == b""
        good.sendall(wire.request(wire.Op.READ, 1, fh, 0, 4))
        assert answer(good) == (1, 0, 0, b"0123")


def test_closing_the_port_ends_its_streams(served: exports.Exports, tmp_path: pathlib.Path) -> None:
    ca = tls.make_ca(tmp_path / "ca")
    p = dataport.DataPort(served, tls.server_context(tls.issue(ca, tmp_path / "home", "home", ("127.0.0.1",))),
                          "127.0.0.1")
    p.start()
    away = tls.issue(ca, tmp_path / "away", "away", ("127.0.0.1",))
    sock, hello = connect(p, tls.client_context(away), "j")
    with sock:
        assert hello == {"errno": 0}
        p.close()
        assert sock.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=10).close()



def test_a_port_on_an_ipv6_address(served: exports.Exports, tmp_path: pathlib.Path) -> None:
    """A pod's IP (the agent's address) may be IPv6."""
    ca = tls.make_ca(tmp_path / "ca")
    p = dataport.DataPort(served, tls.server_context(tls.issue(ca, tmp_path / "home", "home", ("::1",))), "::1")
    p.start()
    try:
        context = tls.client_context(tls.issue(ca, tmp_path / "away", "away", ("::1",)))
        raw = socket.create_connection(("::1", p.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="::1") as sock:
            sock.sendall(b'{"job": "j"}\n')
            assert json.loads(recv_exactly_line(sock)) == {"errno": 0}
    finally:
        p.close()
