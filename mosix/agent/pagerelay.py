"""Mutual TLS around CRIU's plain page stream, done by OpenSSL (Python's ssl) instead of CRIU's GnuTLS.

Why: CRIU's own `--tls` moves pages at ~100 MiB/s on this machine (it copies every 16 KiB record
through GnuTLS twice), a third of its plain stream (which splices); OpenSSL through one relay per
side keeps most of the plain speed. Each relay carries exactly one connection, then ends:

    source CRIU dump --plain--> Outbound (127.0.0.N, one accept) ==TLS==> Inbound (peer) --plain--> peer's page server

`Inbound` connects to its page server as soon as that listens, before the port is known to anyone,
so the page server's one connection is the relay's; it then accepts one TLS client with a cluster
CA certificate. `Outbound` accepts one connection, from the dump it is started for: a stranger that
got in first would leave the dump unable to connect, and a failed dump is never restored.
`Outbound` may be started before the peer's relay is known (a future of its address): the dump
then starts while the peer opens its page server, and waits on the connection for it.
Either relay reports `ok` only if both directions ended cleanly.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import select
import socket
import ssl
import threading
import time

log = logging.getLogger(__name__)

BUFFER = 1 << 20
ACCEPT_TIMEOUT = 120.0  # for the other end to connect
IDLE_TIMEOUT = 300.0  # a stream with nothing moving for this long is dead


Peer = tuple[str, int] | concurrent.futures.Future[tuple[str, int]]  # the peer relay's address, or its future


class _Relay:
    """One connection's relay, in a thread of its own; `done` is set when it ends, `ok` if cleanly."""

    def __init__(self, name: str) -> None:
        self.ok = False
        self.error = ""
        self.done = threading.Event()
        self._name = name

    def _start(self) -> None:
        threading.Thread(target=self._main, name=self._name, daemon=True).start()

    def _main(self) -> None:
        try:
            self._run()
            self.ok = True
        except (OSError, ValueError) as e:
            self.error = f"{type(e).__name__}: {e}"
            log.warning("%s: %s", self._name, self.error)
        finally:
            self.done.set()

    def _run(self) -> None:
        raise NotImplementedError


class Inbound(_Relay):
    """The target's end: TLS from one cluster peer on (address, port) to the page server at page_server."""

    def __init__(self, address: str, page_server: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(f"page relay in {address}")
        self._listener = socket.create_server((address, 0))
        self.port: int = self._listener.getsockname()[1]
        self._criu = socket.create_connection(page_server, timeout=10)  # first, before the port is published
        self._context = context
        self._start()

    def _run(self) -> None:
        with self._listener, self._criu:
            self._listener.settimeout(ACCEPT_TIMEOUT)
            raw, _ = self._listener.accept()
            self._listener.close()  # one connection only
            raw.settimeout(30)
            with self._context.wrap_socket(raw, server_side=True) as peer:  # handshake: CA-certified client
                _pump(self._criu, peer)

    def close(self) -> None:
        """Stop waiting (the migration was given up)."""
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(OSError):
            self._criu.close()


class Outbound(_Relay):
    """The source's end: one plain connection from the dump on (address, port), over TLS to the peer's relay.
    `connected_at` and `streaming_at` (time.monotonic) say when the dump connected and when the peer's relay
    took the stream: where a dump's time went."""

    def __init__(self, address: str, peer: Peer, context: ssl.SSLContext) -> None:
        super().__init__(f"page relay out {address}")
        self.connected_at: float | None = None
        self.streaming_at: float | None = None
        self._listener = socket.create_server((address, 0))
        self.port: int = self._listener.getsockname()[1]
        self._peer = peer
        self._context = context
        self._start()

    def _run(self) -> None:
        with self._listener:
            self._listener.settimeout(ACCEPT_TIMEOUT)
            dump, _ = self._listener.accept()
            self.connected_at = time.monotonic()
            self._listener.close()
        with dump:
            peer = self._peer
            if isinstance(peer, concurrent.futures.Future):
                try:
                    peer = peer.result(ACCEPT_TIMEOUT)
                except (Exception, concurrent.futures.CancelledError) as e:  # closing `dump` fails the dump
                    raise ConnectionAbortedError(f"no page server to stream to: {e}") from e
            with socket.create_connection(peer, timeout=30) as raw, self._context.wrap_socket(
                raw, server_hostname=peer[0]
            ) as secure:
                self.streaming_at = time.monotonic()
                _pump(dump, secure)

    def close(self) -> None:
        """Stop waiting (the dump never came)."""
        with contextlib.suppress(OSError):
            self._listener.close()


def _pump(plain: socket.socket, secure: ssl.SSLSocket) -> None:
    """Copy both ways between CRIU's plain socket and the TLS one, in one thread (an SSL object must not
    be read and written from two threads at once), non-blocking. CRIU's end closes last: the dump after
    the page server's final answer, the page server after its last answer; so the plain side's EOF ends
    the relay, and the TLS side's EOF (the other relay ended) is passed on as a half-close."""
    for s in (plain, secure):
        s.setblocking(False)
    reading: list[socket.socket] = [plain, secure]
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    while True:
        ready: list[socket.socket] = [secure] if secure in reading and secure.pending() else []
        if not ready:
            ready, _, _ = select.select(reading, [], [], IDLE_TIMEOUT)
            if not ready:
                raise TimeoutError(f"page stream idle for {IDLE_TIMEOUT} s")
        for src in ready:
            n, eof = _read_burst(src, view)
            if n:
                _send_all(secure if src is plain else plain, view[:n])
            if eof:
                if src is plain:
                    return
                reading.remove(secure)
                with contextlib.suppress(OSError):
                    plain.shutdown(socket.SHUT_WR)


def _read_burst(src: socket.socket, view: memoryview) -> tuple[int, bool]:
    """Read all src has now, up to the buffer's size: (bytes read, whether it reached EOF). A TLS read
    yields one 16 KiB record; gathering what has arrived before passing it on makes the other side's
    writes large and the loop turn once per burst, not per record (a quarter less CPU per GiB here)."""
    n = 0
    while n < len(view):
        try:
            got = src.recv_into(view[n:])
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return n, False
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return n, True
        if got == 0:
            return n, True
        n += got
    return n, False


def _send_all(sock: socket.socket, data: memoryview) -> None:
    while data:
        try:
            sent = sock.send(data)
        except (ssl.SSLWantWriteError, BlockingIOError):
            select.select([], [sock], [], IDLE_TIMEOUT)
            continue
        except ssl.SSLWantReadError:
            select.select([sock], [], [], IDLE_TIMEOUT)
            continue
        data = data[sent:]
