"""Home's end of the mounts' data streams: a mutual-TLS listener of its own, one thread per stream.

The bytes of a job's reads and writes are most of what crosses the agent link, and asyncio's TLS
(a memory BIO fed by the event loop, then aiohttp's body parser) cost more per byte than the disk:
here a blocking TLS socket in a thread receives each frame into one buffer that goes to pwrite, and
a READ is pread into the buffer its answer is sent from. The agent's API tells the FUSE side this
listener's port (`routes`); the stream itself starts with a hello line naming the job:

    FUSE side: {"job": NAME}\\n    home: {"errno": 0}\\n (or home's errno and "error"), then `wire` frames

Frames are carried out one after another, in order; answers wait while more frames are already
here, and go out together.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import select
import socket
import ssl
import threading
import typing

from mosix.agent import tls
from mosix.agent.homefs import exports, wire

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 30.0  # seconds a peer has to finish TLS and name its job
HELLO_MAX = 4096


class DataPort:
    """The listener and its stream threads (`close` ends them all)."""

    def __init__(self, served: exports.Exports, context: ssl.SSLContext, address: str) -> None:
        self.served = served
        self.context = context
        self.address = address
        self.listener: socket.socket | None = None
        self.port: int | None = None  # (once started)
        self._conns: set[int] = set()  # the streams' sockets (fds)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="homefs-dataport", daemon=True)

    def start(self) -> None:
        """Listen on an ephemeral port: after the agent's own ports are bound (one given to it as free
        may be the next ephemeral one)."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET  # a pod's IP may be IPv6
        self.listener = socket.create_server((self.address, 0), family=family)
        self.port = self.listener.getsockname()[1]
        self._thread.start()

    def close(self) -> None:
        """Stop listening and end every stream (a FUSE side reconnects to whoever serves next)."""
        if self.listener is None:
            return
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        with self._lock:
            self._closed = True
            for fd in self._conns:  # (a stream's thread closes its fd only once it is out of the set)
                with contextlib.suppress(OSError), socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
        if self._thread.is_alive():
            self._thread.join()
        self.listener.close()

    def _accept(self) -> None:
        assert self.listener is not None  # (started)
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn.fileno())
            threading.Thread(target=self._serve, args=(conn,), name="homefs-stream", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        sock: socket.socket = conn
        try:
            conn.settimeout(HELLO_TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = conn.getpeername()[0]  # (the wrap takes conn's fd, and closes it if the handshake fails)
            try:
                sock = secure = self.context.wrap_socket(conn, server_side=True)  # the same fd, now TLS
            except ssl.SSLError as e:
                if (why := tls.refusal(e)) is not None:
                    log.warning("homefs data port refused %s: %s", peer, why)
                raise
            job = self._hello(secure)
            if job is not None:
                secure.settimeout(None)
                _frames(secure, self.served, job)
        except (OSError, ValueError) as e:  # the peer went away, or is not one of ours
            log.debug("homefs data stream ended: %s", e)
        finally:
            with self._lock:
                self._conns.discard(fd)
            sock.close()

    def _hello(self, sock: ssl.SSLSocket) -> str | None:
        """The job the peer streams for, once it is one this node serves (None: refused, told why)."""
        line = b""
        while not line.endswith(b"\n"):
            data = sock.recv(HELLO_MAX - len(line))
            if not data or len(line) >= HELLO_MAX:
                raise ValueError("no hello on a homefs data stream")
            line += data
        hello = json.loads(line)
        job = hello.get("job") if isinstance(hello, dict) else None
        if not isinstance(job, str) or job not in self.served.jobs():
            refused = exports.NotExported(str(job))
            sock.sendall(json.dumps({"errno": refused.errno, "error": str(refused)}).encode() + b"\n")
            return None
        sock.sendall(b'{"errno": 0}\n')
        return job


def _recv_into(sock: ssl.SSLSocket, view: memoryview) -> bool:
    """Fill view from the stream (False: it ended before the first byte)."""
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            if got:
                raise ConnectionResetError("a homefs frame cut short")
            return False
        got += n
    return True


def _more(sock: ssl.SSLSocket, readable: select.poll) -> bool:
    """Whether the next frame (or part of it) is already here (`readable` polls sock: poll, not select,
    as an agent may hold more than FD_SETSIZE files)."""
    return bool(sock.pending()) or bool(readable.poll(0))


def _frames(sock: ssl.SSLSocket, served: exports.Exports, job: str) -> None:
    """Carry out the stream's frames in order until it ends; answers go out together when no frame waits."""
    head = bytearray(wire.REQUEST.size)
    incoming = memoryview(bytearray(wire.MAX_IO))  # every WRITE's bytes, one after another
    answers: list[bytes | memoryview] = []
    waiting = 0  # bytes of answers not sent yet
    readable = select.poll()
    readable.register(sock, select.POLLIN)
    while _recv_into(sock, memoryview(head)):
        frame = Frame(*wire.REQUEST.unpack(head))
        if frame.op not in wire.Op.__members__.values() or frame.size > wire.MAX_IO:
            raise ValueError(f"not a homefs frame: op {frame.op}, size {frame.size}")
        data = incoming[:frame.size if frame.op == wire.Op.WRITE else 0]
        if data and not _recv_into(sock, data):
            raise ConnectionResetError("a homefs frame cut short")
        try:
            answer = _answer(served, job, frame, data)
        except (OSError, ValueError, OverflowError) as e:
            answer = wire.reply(frame.rid, (e.errno or errno.EIO) if isinstance(e, OSError) else errno.EINVAL, 0, 0)
        answers.append(answer)
        waiting += len(answer)
        if waiting >= wire.MAX_IO or not _more(sock, readable):
            sock.sendall(answers[0] if len(answers) == 1 else b"".join(answers))
            answers, waiting = [], 0


class Frame(typing.NamedTuple):
    op: int
    rid: int
    fh: int
    offset: int
    size: int


def _answer(served: exports.Exports, job: str, frame: Frame, data: memoryview) -> bytes | memoryview:
    """Carry out one frame: WRITE answers the bytes written, READ the bytes (read straight into the
    buffer the answer is sent from), FSYNC (offset 1: fdatasync) and BARRIER nothing."""
    if frame.op == wire.Op.WRITE:
        return wire.reply(frame.rid, 0, served.write(job, frame.fh, frame.offset, data), 0)
    if frame.op == wire.Op.READ:
        buf = bytearray(wire.REPLY.size + frame.size)
        n = served.read_into(job, frame.fh, frame.offset, memoryview(buf)[wire.REPLY.size:])
        wire.REPLY.pack_into(buf, 0, frame.rid, 0, 0, n)
        return memoryview(buf)[:wire.REPLY.size + n]
    if frame.op == wire.Op.FSYNC:
        served.meta(job, "fsync", {"fh": frame.fh, "datasync": frame.offset == 1})
    return wire.reply(frame.rid, 0, 0, 0)
