"""The FUSE side's data stream to the home agent: one mutual-TLS connection per mount to home's data
port (`dataport`, found through the agent API) carrying `wire` frames, so reads and writes are frames
in flight, many at once, instead of one request each. Answers come back in order and go to the
callback of their frame, in the FUSE process's trio loop.

The TLS socket belongs to one thread of its own (`_Link`): it encrypts and sends while the trio loop
takes the next FUSE request (OpenSSL lets go of the GIL), and no other thread ever touches the
socket. A broken stream fails every frame in flight with EIO; the next frame opens a new one (home
keeps the open files per job, not per connection).
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import errno
import http.client
import itertools
import json
import logging
import os
import selectors
import socket
import ssl
import threading
import urllib.parse

import trio

from mosix.agent.homefs import remote, wire

log = logging.getLogger("mosix.homefs")
OnReply = collections.abc.Callable[[int, int, bytes], None]  # errno, value, payload
Reply = tuple[int, int, int, bytes]  # id, errno, value, payload
HELLO_MAX = 1 << 12
JOIN_BELOW = 1 << 16  # frames smaller than this go out as one piece (each piece is a TLS record and a write)


class _Replies:
    """Reply frames as they arrive: `space` is where the next bytes go (a payload straight into a buffer
    of its own, not through a shared one), `received` takes them and says when a reply is whole."""

    def __init__(self) -> None:
        self.head = bytearray(wire.REPLY.size)
        self.answer: tuple[int, int, int] | None = None  # id, errno, value of the reply whose payload comes
        self.payload = bytearray()
        self.got = 0  # bytes of the header, or of the payload, so far

    def space(self) -> memoryview:
        return memoryview(self.payload if self.answer else self.head)[self.got:]

    def received(self, n: int) -> Reply | None:
        """n more bytes are in `space`; the reply they complete, if they do."""
        self.got += n
        if self.answer is None:
            if self.got < wire.REPLY.size:
                return None
            rid, err, value, size = wire.REPLY.unpack(self.head)
            self.answer, self.payload, self.got = (rid, err, value), bytearray(size), 0
        if self.got < len(self.payload):
            return None
        (rid, err, value), payload = self.answer, bytes(self.payload)
        self.answer, self.payload, self.got = None, bytearray(), 0
        return rid, err, value, payload


class _Link(threading.Thread):
    """One TLS connection, driven by its own thread: sends what `push` queues, hands answers to trio."""

    def __init__(self, sock: ssl.SSLSocket, token: trio.lowlevel.TrioToken,
                 deliver: collections.abc.Callable[[_Link, list[Reply]], None],
                 lost: collections.abc.Callable[[_Link, BaseException], None]) -> None:
        super().__init__(name="homefs-link", daemon=True)
        self.sock = sock
        self.token = token
        self.deliver, self.lost = deliver, lost
        self.outbox: collections.deque[bytes | memoryview] = collections.deque()
        self.lock = threading.Lock()
        self.wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.closing = False

    def push(self, pieces: collections.abc.Iterable[bytes | memoryview]) -> None:
        """Queue bytes to send (from the trio thread)."""
        with self.lock:
            self.outbox.extend(pieces)
            self._poke()

    def close(self) -> None:
        """Ask the thread to close the connection and end (from the trio thread)."""
        with self.lock:
            self.closing = True
            self._poke()

    def _poke(self) -> None:
        if self.wake >= 0:  # (under the lock) the thread closes it, once, as it ends
            os.eventfd_write(self.wake, 1)

    def _tell(self, fn: collections.abc.Callable[..., object], *args: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(fn, self, *args)

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # whatever ends the thread ends the stream: its frames fail, none hang
            if not self.closing:
                self._tell(self.lost, e)
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()
            with self.lock:
                os.close(self.wake)
                self.wake = -1

    def _loop(self) -> None:
        body = _Replies()
        sending: memoryview | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(self.wake, selectors.EVENT_READ)
            sel.register(self.sock, selectors.EVENT_READ)
            writing = False
            while not self.closing:
                if sending is None:
                    with self.lock:
                        if self.outbox:
                            sending = memoryview(self.outbox.popleft())
                if (sending is not None) != writing:
                    writing = sending is not None
                    sel.modify(self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0))
                if sending is not None:
                    try:
                        n = self.sock.send(sending)
                        sending = sending[n:] if n < len(sending) else None
                        continue
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        pass
                replies = self._receive(body)
                if replies:
                    self._tell(self.deliver, replies)
                    continue
                for key, _ in sel.select():
                    if key.fileobj == self.wake:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self.wake)

    def _receive(self, body: _Replies) -> list[Reply]:
        """Whatever answers have arrived (none: nothing to read now)."""
        replies: list[Reply] = []
        while True:
            try:
                n = self.sock.recv_into(body.space())
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return replies
            if not n:
                raise EOFError("home closed the stream")
            if (reply := body.received(n)) is not None:
                replies.append(reply)


class Stream:
    """One mount's frames to its home agent (used from the FUSE process's trio loop)."""

    def __init__(self, host: str, port: int, job: str, context: ssl.SSLContext, timeout: float = 60) -> None:
        self.host, self.port, self.job = host, port, job
        self.context = context
        self.timeout = timeout
        self.inflight = 0  # bytes of WRITE frames not answered yet
        self._link: _Link | None = None
        self._connecting = trio.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[OnReply, int]] = {}
        self._answered = trio.Event()

    async def send(self, op: wire.Op, fh: int, offset: int, size: int, data: bytes, *, on_reply: OnReply) -> None:
        """Put a frame on the stream; `on_reply` gets its answer (EIO if the stream breaks first)."""
        link = self._link or await self._connect()
        rid = next(self._ids) & 0xFFFFFFFF
        weight = len(data) if op == wire.Op.WRITE else 0
        self._waiting[rid] = (on_reply, weight)
        self.inflight += weight
        head = wire.request(op, rid, fh, offset, size)
        link.push((head + data,) if len(data) < JOIN_BELOW else (head, data))

    async def call(self, op: wire.Op, fh: int, offset: int = 0, size: int = 0,
                   data: bytes = b"") -> tuple[int, bytes]:
        """A frame and its answer: (value, payload); home's errno raises RemoteError."""
        done = trio.Event()
        answer: list[tuple[int, int, bytes]] = []

        def on_reply(err: int, value: int, payload: bytes) -> None:
            answer.append((err, value, payload))
            done.set()

        await self.send(op, fh, offset, size, data, on_reply=on_reply)
        with trio.move_on_after(self.timeout) as waited:
            await done.wait()
        if waited.cancelled_caught:
            self._broken(TimeoutError(f"no answer in {self.timeout} s"))
        err, value, payload = answer[0]
        if err:
            raise remote.RemoteError(err, f"{op.name} at home: {errno.errorcode.get(err, err)}")
        return value, payload

    async def settle(self, limit: int = 0) -> None:
        """Wait until at most `limit` bytes of writes are in flight."""
        while self.inflight > limit:
            with trio.move_on_after(self.timeout) as waited:
                await self._answered.wait()
            if waited.cancelled_caught:
                self._broken(TimeoutError(f"writes not answered in {self.timeout} s"))

    def close(self) -> None:
        """Close the stream (what is in flight fails)."""
        self._broken(ConnectionAbortedError("closed"))

    async def _connect(self) -> _Link:
        async with self._connecting:
            if self._link is None:
                try:
                    sock = await trio.to_thread.run_sync(self._open)
                except (OSError, ValueError) as e:
                    log.warning("data stream to %s not opened: %r", self.host, e)
                    if isinstance(e, remote.RemoteError):
                        raise
                    raise remote.RemoteError(errno.EIO, f"home agent {self.host}: {e}") from e
                self._link = _Link(sock, trio.lowlevel.current_trio_token(), self._deliver, self._lost)
                self._link.start()
            return self._link

    def _open(self) -> ssl.SSLSocket:
        """Ask home where the stream goes, connect there and name the job (blocking: in a worker thread)."""
        api = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)
        try:
            api.request("POST", f"/homefs/{urllib.parse.quote(self.job, safe='')}/stream")
            answer = api.getresponse()
            status, body = answer.status, answer.read()
        finally:
            api.close()
        if status != 200:
            raise _refused(status, body)
        port = int(json.loads(body)["port"])
        sock = self.context.wrap_socket(socket.create_connection((self.host, port), timeout=self.timeout),
                                        server_hostname=self.host)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(json.dumps({"job": self.job}).encode() + b"\n")
            hello = b""
            while not hello.endswith(b"\n"):
                if len(hello) > HELLO_MAX or not (data := sock.recv(HELLO_MAX)):
                    raise ConnectionResetError("home closed the stream before answering")
                hello += data
            if err := int(json.loads(hello).get("errno") or 0):
                raise remote.RemoteError(err, str(json.loads(hello).get("error")))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _deliver(self, link: _Link, replies: list[Reply]) -> None:
        if link is not self._link:
            return
        for rid, err, value, payload in replies:
            on_reply, weight = self._waiting.pop(rid, (None, 0))
            self.inflight -= weight
            if on_reply is not None:
                on_reply(err, value, payload)
        self._answered.set()
        self._answered = trio.Event()

    def _lost(self, link: _Link, cause: BaseException) -> None:
        if link is self._link:
            self._broken(cause)

    def _broken(self, cause: BaseException) -> None:
        """The stream is unusable: close it and fail what is in flight."""
        link, self._link = self._link, None
        waiting, self._waiting = self._waiting, {}
        self.inflight = 0
        if link is not None:
            link.close()
        for on_reply, _ in waiting.values():
            on_reply(errno.EIO, 0, b"")
        self._answered.set()
        self._answered = trio.Event()


def _refused(status: int, body: bytes) -> remote.RemoteError:
    """Home answered with an error (403: it does not serve this job)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    return remote.RemoteError(int(parsed.get("errno") or errno.EIO), str(parsed.get("error") or f"HTTP {status}"))
