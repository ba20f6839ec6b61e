"""Stdio pumps: the agent moves a job's stdout/stderr pipes continuously into per-job files.

The job writes to pipes the agent owns, never to host files (CRIU cannot dump those), and the
agent appends what it reads, so nothing is lost when the job is checkpointed and killed: the
pump reads to EOF. `drain` gives an exact file offset while the job is paused, which the
checkpoint records so a restore can cut the file back to the moment of the dump.

Bytes move with splice(2), pipe to file inside the kernel, never through a buffer of ours: a
kill of the agent at any instant leaves each byte either still in the pipe (which the keeper
holds open, and the restarted agent pumps on) or already in the file, never in both or neither.
The file is written at its end by offset: splice refuses files opened O_APPEND.
"""

from __future__ import annotations

import os
import pathlib
import select
import threading

CHUNK = 65536


class Pump:
    """Copies everything from one pipe's read end to the end of one file, in a thread."""

    def __init__(self, read_fd: int, path: pathlib.Path) -> None:
        self.path = path
        self._fd = read_fd
        os.set_blocking(read_fd, False)
        self._out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()
        self._eof = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"pump {path}", daemon=True)

    def start(self) -> None:
        """Begin copying."""
        self._thread.start()

    def drain(self) -> int:
        """Copy what is in the pipe now and return the file's size (exact if the writer is paused)."""
        with self._lock:
            if not self._eof.is_set():
                self._copy_available()
            return os.fstat(self._out).st_size if self._out >= 0 else self.path.stat().st_size

    def inject(self, data: bytes) -> None:
        """Append the agent's own bytes after what the pipe held until now (a warning on the job's stderr)."""
        with self._lock:
            if not self._eof.is_set():
                self._copy_available()
            fd = self._out if self._out >= 0 else os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, os.fstat(fd).st_size):]
            finally:
                if fd != self._out:
                    os.close(fd)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for EOF (every writer gone); True if it came."""
        return self._eof.wait(timeout)

    def stop(self) -> None:
        """Copy what is left, then stop and close, EOF or not."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            if not self._eof.is_set():
                self._copy_available()
            self._close()

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self._stop.is_set() and not self._eof.is_set():
            if not poller.poll(200):
                continue
            with self._lock:
                if not self._eof.is_set():
                    self._copy_available()
        with self._lock:
            if self._eof.is_set():
                self._close()

    def _copy_available(self) -> None:
        while True:
            try:
                moved = os.splice(self._fd, self._out, CHUNK, offset_dst=os.fstat(self._out).st_size,
                                  flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                return
            if not moved:
                self._eof.set()
                return

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._out >= 0:
            os.close(self._out)
            self._out = -1
        self._eof.set()
