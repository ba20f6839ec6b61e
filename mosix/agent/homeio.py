"""Home-node I/O: every job's stdout and stderr kept, whole and in order, by its home node's agent, and
the input of `mosrun -i` jobs, kept there for whichever agent runs the job to feed it.

The agent running a job pushes the job's new output home, at logical offsets (bytes the job has
written since it started, wherever it ran), so the home file is one continuous stream across
migrations, freezes and restores. A restore from an older checkpoint rewinds it: the restored
process writes that output again.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import pathlib
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable

from mosix.agent import checkpoints, containers, errors

STREAMS = ("stdout", "stderr")
CHUNK = 1 << 20
INPUT, INPUT_END = "stdin", "stdin.end"  # the input, and the mark that it ended (mosrun's stdin hit EOF)
ENDED_HEADER = "X-Mosix-Input-Ended"


class Gap(errors.AgentError):
    """The home lacks output before this offset: an earlier part has not arrived yet."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"home has {size} bytes; output must continue from there")


def _job_of(key: str) -> str:
    """The job's key, of a job's or of one of its processes' output (`KEY_INDEX`: names have no "_")."""
    return key.partition("_")[0]


def _safe(key: str) -> str:
    name = key.replace("/", ".")
    if not name or name.startswith(".") or not all(c.isalnum() or c in "-_." for c in name):
        raise errors.AgentError(f"bad job key {key!r}")
    return name


class HomeOutput:
    """The home agent's store of its jobs' output, one file per job and stream (root only)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._listeners: dict[str, set[Callable[[], None]]] = {}
        self._finished: frozenset[str] = frozenset()  # keys of this home's jobs that finished

    def listen(self, key: str, changed: Callable[[], None]) -> Callable[[], None]:
        """Calls `changed` (in whichever thread) each time the output of the job of `key` grows (any of its
        processes', `KEY_INDEX`, for a gang or -S file) or the job finishes, so that a reader can wait for
        more instead of polling; returns what stops it."""
        key = _job_of(key)
        with self._lock:
            self._listeners.setdefault(key, set()).add(changed)

        def stop() -> None:
            with self._lock:
                listeners = self._listeners.get(key, set())
                listeners.discard(changed)
                if not listeners:
                    self._listeners.pop(key, None)

        return stop

    def finished(self, key: str) -> bool:
        """Whether the job of `key` (or of its process, `KEY_INDEX`) finished: no more output will come."""
        return _job_of(key) in self._finished

    def set_finished(self, keys: Iterable[str]) -> None:
        """The keys of this home's finished jobs, as the store lists them now; their readers are told."""
        keys = frozenset(keys)
        new, self._finished = keys - self._finished, keys
        for key in new:
            self._tell(key)

    def _tell(self, job_key: str) -> None:
        with self._lock:
            told = list(self._listeners.get(job_key, ()))
        for changed in told:
            changed()

    def path(self, key: str, stream: str) -> pathlib.Path:
        if stream not in STREAMS:
            raise errors.AgentError(f"no stream {stream!r} (stdout or stderr)")
        return self.root / _safe(key) / stream

    def size(self, key: str, stream: str) -> int:
        path = self.path(key, stream)
        return path.stat().st_size if path.exists() else 0

    def append(self, key: str, stream: str, offset: int, data: bytes, first: bool = False) -> int:
        """Adds output at `offset`; returns the stream's new size. `first` marks the start of a run of
        output (a start or a restore): output already kept past it is cut, since it will be written again."""
        path = self.path(key, stream)
        with self._lock:
            checkpoints.secure_dir(path.parent)
            size = path.stat().st_size if path.exists() else 0
            if offset > size:
                raise Gap(size)
            if offset < size:
                if first:
                    os.truncate(path, offset)
                    size = offset
                else:
                    data, offset = data[size - offset:], size
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        if data:
            self._tell(_job_of(key))
        return size + len(data)

    def add_input(self, key: str, data: bytes) -> int:
        """Append to the job's input (what mosrun -i read from its terminal); the input's new size."""
        folder = checkpoints.secure_dir(self.root / _safe(key))
        if (folder / INPUT_END).exists():
            raise errors.JobError(f"the input of {key} has ended")
        fd = os.open(folder / INPUT, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def end_input(self, key: str) -> None:
        """The input is complete: once the job has read it all, its stdin reaches EOF."""
        folder = checkpoints.secure_dir(self.root / _safe(key))
        (folder / INPUT).touch(mode=0o600)
        (folder / INPUT_END).touch(mode=0o600)

    def read_input(self, key: str, offset: int, limit: int = CHUNK) -> tuple[bytes, bool]:
        """The job's input from `offset`, and whether it ends there (nothing will ever follow)."""
        folder = self.root / _safe(key)
        ended = (folder / INPUT_END).exists()  # before reading: the mark is written after the last byte
        try:
            with (folder / INPUT).open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(offset)
                data = f.read(limit)
        except FileNotFoundError:
            return b"", False
        return data, ended and offset + len(data) >= size

    def read(self, key: str, stream: str, offset: int, limit: int = CHUNK) -> bytes:
        path = self.path(key, stream)
        if not path.exists():
            return b""
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)


Sink = Callable[[str, str, int, bytes, bool], int]


def remote(address: str, port: int, context: ssl.SSLContext) -> Sink:
    """Pushes output to another node's agent over the authenticated agent API."""

    def send(key: str, stream: str, offset: int, data: bytes, first: bool) -> int:
        query = urllib.parse.urlencode({"key": key, "stream": stream, "offset": offset, "first": int(first)})
        conn = http.client.HTTPSConnection(address, port, context=context, timeout=30)
        try:
            conn.request("POST", f"/output?{query}", body=data, headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            body = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        if resp.status == 409:
            raise Gap(int(body["size"]))
        if resp.status != 200:
            raise errors.AgentError(f"home agent {address} refused output of {key}: {resp.status} {body}")
        return int(body["size"])

    return send


InputSource = Callable[[str, int], tuple[bytes, bool]]  # (job key, offset) -> (input, ended)


def remote_input(address: str, port: int, context: ssl.SSLContext) -> InputSource:
    """Reads a job's input from its home node's agent over the authenticated agent API."""

    def read(key: str, offset: int) -> tuple[bytes, bool]:
        query = urllib.parse.urlencode({"key": key, "offset": offset})
        conn = http.client.HTTPSConnection(address, port, context=context, timeout=30)
        try:
            conn.request("GET", f"/input?{query}")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise errors.AgentError(f"home agent {address} refused the input of {key}: {resp.status}")
        return body, resp.getheader(ENDED_HEADER) == "1"

    return read


@dataclasses.dataclass
class Forwarder:
    """What of each job's output has reached home, per run of output (stretch) on this agent."""

    sent: dict[tuple[str, str, int], int] = dataclasses.field(default_factory=dict)
    forwarded: dict[str, int] = dataclasses.field(default_factory=dict)  # bytes home accepted, per job: its I/O stats

    def push(self, manager: containers.Manager, name: str, key: str, sink: Sink) -> bool:
        """Sends what is new; True when home has all this agent holds of the job's output."""
        complete = True
        for stream in STREAMS:
            logical_start, file_start, path = manager.output_stretch(name, stream)
            marker = (name, stream, logical_start)
            first = marker not in self.sent
            position = self.sent.get(marker, logical_start)
            size = path.stat().st_size if path.exists() else 0
            local = file_start + position - logical_start
            data = b""
            if local < size:
                with path.open("rb") as f:
                    f.seek(local)
                    data = f.read(CHUNK)
            if not data and not first:
                continue
            try:
                self.sent[marker] = sink(key, stream, position, data, first)
                self.forwarded[name] = self.forwarded.get(name, 0) + len(data)
            except Gap as gap:
                if gap.size < logical_start:  # the node before us has not sent its last output yet
                    complete = False
                    continue
                self.sent[marker] = gap.size  # home already has part of ours (we restarted): go on from there
            if local + len(data) < size:
                complete = False
        return complete

    def forget(self, name: str) -> None:
        self.forwarded.pop(name, None)
        for marker in [m for m in self.sent if m[0] == name]:
            del self.sent[marker]
