"""The FUSE side's data stream to the home agent (trio, in the FUSE process's own loop): one long
mutual-TLS HTTP/1.1 request carrying `wire` frames, so reads and writes are frames in flight, many at
once, instead of one request each. Answers come back in order and go to the callback of their frame.

A broken stream fails every frame in flight with EIO; the next frame opens a new one (home keeps the
open files per job, not per connection).
"""

from __future__ import annotations

import collections.abc
import errno
import itertools
import json
import ssl

import trio

from mosix.agent.homefs import remote, wire

OnReply = collections.abc.Callable[[int, int, bytes], None]  # errno, value, payload
RECEIVE = 1 << 18
HEAD_MAX = 1 << 14
BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError, ValueError)


class _Chunked:
    """The body of a chunked HTTP/1.1 response, read as a byte stream."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], buffered: bytes) -> None:
        self.stream = stream
        self.buf = bytearray(buffered)
        self.left = 0  # bytes of the present chunk not yet read
        self.first = True

    async def _more(self) -> None:
        data = await self.stream.receive_some(RECEIVE)
        if not data:
            raise trio.BrokenResourceError("home closed the stream")
        self.buf += data

    async def line(self) -> bytes:
        """One CRLF-ended line of the raw stream, without the CRLF."""
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > HEAD_MAX:
                raise ValueError("a line too long in home's answer")
            await self._more()
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    async def exactly(self, n: int) -> bytes:
        """The next n bytes of the body."""
        out = bytearray()
        while len(out) < n:
            if self.left == 0:
                if not self.first:
                    await self.line()  # the CRLF ending the chunk before
                self.first = False
                self.left = int((await self.line()).split(b";")[0], 16)
                if self.left == 0:
                    raise trio.BrokenResourceError("home ended the stream")
            if not self.buf:
                await self._more()
            take = min(n - len(out), self.left, len(self.buf))
            out += self.buf[:take]
            del self.buf[:take]
            self.left -= take
        return bytes(out)


class Stream:
    """One mount's frames to its home agent. `nursery` (set before use) runs the answer reader."""

    def __init__(self, host: str, port: int, path: str, context: ssl.SSLContext, timeout: float = 60) -> None:
        self.host, self.port, self.path = host, port, path
        self.context = context
        self.timeout = timeout
        self.nursery: trio.Nursery | None = None
        self.inflight = 0  # bytes of WRITE frames not answered yet
        self._stream: trio.SSLStream[trio.SocketStream] | None = None
        self._send = trio.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[OnReply, int]] = {}
        self._answered = trio.Event()

    async def send(self, op: wire.Op, fh: int, offset: int, size: int, data: bytes, *, on_reply: OnReply) -> None:
        """Put a frame on the stream; `on_reply` gets its answer (EIO if the stream breaks first)."""
        async with self._send:
            try:
                with trio.fail_after(self.timeout):
                    stream = self._stream or await self._connect()
                    rid = next(self._ids) & 0xFFFFFFFF
                    weight = len(data) if op == wire.Op.WRITE else 0
                    self._waiting[rid] = (on_reply, weight)
                    self.inflight += weight
                    head = b"%x\r\n" % (wire.REQUEST.size + len(data)) + wire.request(op, rid, fh, offset, size)
                    await stream.send_all(b"".join((head, data, b"\r\n")))  # one send: each costs
            except BROKEN as e:
                await self._broken(e)
                if isinstance(e, remote.RemoteError):
                    raise
                raise remote.RemoteError(errno.EIO, f"home agent {self.host}: {e}") from e

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
            await self._broken(trio.TooSlowError(f"no answer in {self.timeout} s"))
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
                await self._broken(trio.TooSlowError(f"writes not answered in {self.timeout} s"))

    async def _connect(self) -> trio.SSLStream[trio.SocketStream]:
        tcp = await trio.open_tcp_stream(self.host, self.port)
        stream = trio.SSLStream(tcp, self.context, server_hostname=self.host, https_compatible=True)
        try:
            await stream.send_all(
                f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            head = b""
            while (end := head.find(b"\r\n\r\n")) < 0:
                if len(head) > HEAD_MAX or not (data := await stream.receive_some(RECEIVE)):
                    raise trio.BrokenResourceError("home closed the stream before answering")
                head += data
            status, headers = _head(head[:end])
            rest = head[end + 4:]
            if status != 200:
                raise _refused(status, headers, rest)
            if headers.get("transfer-encoding", "").lower() != "chunked":
                raise ValueError("home's stream is not chunked")
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        assert self.nursery is not None, "Stream.nursery is set before the first frame"
        self._stream = stream
        self.nursery.start_soon(self._receive, stream, _Chunked(stream, rest))
        return stream

    async def _receive(self, stream: trio.SSLStream[trio.SocketStream], body: _Chunked) -> None:
        try:
            while True:
                rid, err, value, size = wire.REPLY.unpack(await body.exactly(wire.REPLY.size))
                payload = await body.exactly(size) if size else b""
                on_reply, weight = self._waiting.pop(rid, (None, 0))
                self.inflight -= weight
                self._answered.set()
                self._answered = trio.Event()
                if on_reply is not None:
                    on_reply(err, value, payload)
        except BROKEN as e:
            if self._stream is stream:
                await self._broken(e)

    async def _broken(self, cause: BaseException) -> None:
        """The stream is unusable: close it and fail what is in flight."""
        stream, self._stream = self._stream, None
        waiting, self._waiting = self._waiting, {}
        self.inflight = 0
        self._answered.set()
        self._answered = trio.Event()
        for on_reply, _ in waiting.values():
            on_reply(errno.EIO, 0, b"")
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        """Close the stream (what is in flight fails)."""
        await self._broken(trio.ClosedResourceError("closed"))


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP answer from home: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _refused(status: int, headers: dict[str, str], body: bytes) -> remote.RemoteError:
    """Home answered the stream with an error (403: it does not serve this job)."""
    try:
        parsed = json.loads(body[:int(headers.get("content-length", len(body)))])
    except ValueError:
        parsed = {}
    code = int(parsed.get("errno") or errno.EIO) if isinstance(parsed, dict) else errno.EIO
    text = str(parsed.get("error") or f"HTTP {status}") if isinstance(parsed, dict) else f"HTTP {status}"
    return remote.RemoteError(code, text)
