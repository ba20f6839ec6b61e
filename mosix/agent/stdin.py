"""Stdin feeder: the agent writes a job's input (mosrun -i), kept at its home node, into the job's stdin pipe.

Input is addressed by logical offset (bytes since the job started, wherever it ran), like output.
A checkpoint must record how much input the process itself consumed: bytes still in the pipe
belong to nobody yet. So while the job is paused for a dump the feeder `hold`s: it reads back
what sits in the pipe (it keeps a copy of the read end for that), and the offset the set records
is what the process took. The dump then sees an empty pipe, whatever CRIU does with pipe buffers
of inherited descriptors, and a restore anywhere resumes feeding at exactly that offset. If the
job goes on here, the bytes read back are written again first, in order.

The write end is closed (EOF for the job) only once the home has said the input ended and the
pipe is empty, so an EOF never has input behind it that a later hold would have to put back.

`on_offset` hears every new offset (the agent persists it, so a restarted agent feeds on from
where the pipe's input ends); `on_eof` hears, just before the write end is closed, that the job
gets EOF now (the keeper must let go of its copy of the write end too).
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import select
import termios
import threading
from collections.abc import Callable

CHUNK = 65536
IDLE = (0.02, 0.5)  # seconds between polls when there is nothing to do: from the first, doubling to the second
FULL_WAIT_MS = 200  # longest wait for room in a full pipe before looking at holds and stops again

log = logging.getLogger(__name__)

# (logical offset) -> (the input kept from there on, possibly empty; True if the input ends after it)
Source = Callable[[int], tuple[bytes, bool]]


def pipe_pending(fd: int) -> int:
    """Bytes sitting in the pipe (FIONREAD works on either end)."""
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n, True)
    return int(n[0])


def reopen_reader(read_fd: int) -> int:
    """A read end of the same pipe with an open file description of its own: non-blocking reads by
    the agent must not make the job's reads (which share the original description) non-blocking."""
    return os.open(f"/proc/self/fd/{read_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


class Feeder:
    """Copies a job's input from its source into the write end of its stdin pipe, in a thread."""

    def __init__(self, write_fd: int, read_fd: int, source: Source, offset: int = 0, *,
                 on_offset: Callable[[int], None] | None = None, on_eof: Callable[[], None] | None = None) -> None:
        self._w = write_fd
        self._r = read_fd
        os.set_blocking(write_fd, False)  # the job never shares this description
        os.set_blocking(read_fd, False)  # nor this one: see reopen_reader
        self._source = source
        self._on_offset = on_offset or (lambda _: None)
        self._on_eof = on_eof or (lambda: None)
        self._offset = offset  # logical offset of the next byte to enter the pipe (= of _buf[0])
        self._buf = b""  # fetched, not yet in the pipe
        self._ended = False  # the source said no input follows _buf
        self._held = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stdin feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def closed(self) -> bool:
        """The job has been given EOF."""
        return self._w < 0

    def hold(self) -> int:
        """Call with the job paused: take back what is in the pipe; the input the process consumed."""
        with self._lock:
            self._held = True
            back = b""
            while True:
                try:
                    data = os.read(self._r, CHUNK)
                except BlockingIOError:
                    break
                if not data:
                    break
                back += data
            self._offset -= len(back)
            self._buf = back + self._buf
            if back:
                self._on_offset(self._offset)
            return self._offset

    def release(self) -> None:
        """The job goes on here: feed again, starting with what hold took back."""
        with self._lock:
            self._held = False

    def stop(self) -> None:
        """Stop feeding and close both ends."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            for fd in (self._w, self._r):
                if fd >= 0:
                    os.close(fd)
            self._w = self._r = -1

    def _loop(self) -> None:
        idle = IDLE[0]
        room = select.poll()
        room.register(self._w, select.POLLOUT)
        while not self._stop.is_set():
            moved = self._step()
            if moved is True:
                idle = IDLE[0]
            elif moved is None:  # the pipe is full: wake as soon as the job reads
                room.poll(FULL_WAIT_MS)
                idle = IDLE[0]
            else:
                self._stop.wait(idle)
                idle = min(idle * 2, IDLE[1])

    def _step(self) -> bool | None:
        """One move; False when there was nothing to do, None when the pipe is full."""
        with self._lock:
            if self._held or self._w < 0:
                return False
            if self._buf:
                try:
                    n = os.write(self._w, self._buf)
                except BlockingIOError:
                    return None  # the pipe is full: the job has not read yet
                except BrokenPipeError:  # the job closed its stdin: it takes no more input
                    self._buf = b""
                    self._ended = True
                    return False
                self._buf, self._offset = self._buf[n:], self._offset + n
                self._on_offset(self._offset)
                return True
            if self._ended:
                if pipe_pending(self._r) == 0:
                    self._on_eof()
                    os.close(self._w)
                    self._w = -1
                return False
            at = self._offset
        try:
            data, ended = self._source(at)  # outside the lock: it may ask another node
        except Exception as e:  # the home is away for a moment: the input waits there
            log.warning("stdin: input not read yet: %s", e)
            return False
        with self._lock:
            if self._offset != at or self._buf:
                return True  # a hold moved the offset meanwhile: fetch again from there
            self._buf, self._ended = data, ended
            return bool(data) or ended
