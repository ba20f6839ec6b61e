"""A job's output as its home node keeps it: read it whole, or follow it live (mosrun, mosix logs).

On the local cluster the home agent's files are on this machine; on Kubernetes they are read from
the home agent's user API with the user's own credentials (homeagent.py; RBAC: get mosixjobs/log).
"""

from __future__ import annotations

import functools
import sys
import time
import typing
from collections.abc import Callable, Mapping

from mosix.api import job
from mosix.cli import homeagent, usage
from mosix.client import client, local

STREAMS = ("stdout", "stderr")
HELD_HEADER = "X-Mosix-Held"  # the agent's answer to a held request (mosix/agent/userapi.py)
STATUS_EVERY = 5.0  # seconds between looks at the job's status while its home agent holds requests for output

Reader = Callable[[str, int], bytes]  # (stream, offset) -> the bytes kept from there on


def _local_reader(api: client.Client, store: local.LocalStore, j: job.MosixJob, home: str, suffix: str) -> Reader:
    root = store.state_dir / "nodes" / home / "home" / (api.key(j).replace("/", ".") + suffix)

    def read(stream: str, offset: int) -> bytes:
        path = root / stream
        if not path.exists():
            return b""
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()

    return read


class KubeReader:
    """The job's output from its home agent's user API; `hold` waits there for more instead of polling."""

    def __init__(self, api: client.Client, j: job.MosixJob, home: str, process: str | None) -> None:
        self.agent = homeagent.HomeAgent(api, j, home)
        self.process = process

    def _query(self, stream: str, offset: int) -> dict[str, str | int]:
        query: dict[str, str | int] = {"stream": stream, "offset": offset}
        if self.process is not None:
            query["process"] = self.process
        return query

    def __call__(self, stream: str, offset: int) -> bytes:
        out = b""
        while True:
            data = self.agent.call("GET", "log", self._query(stream, offset + len(out)))
            out += data
            if len(data) < homeagent.CHUNK:
                return out

    def hold(self, stream: str, offset: int, seconds: float) -> tuple[bytes, str | None]:
        """The output from offset, or what arrives there within `seconds` (the agent answers as soon as
        any output of the job grows or the job finishes); and how the agent held the request: "held", "finished"
        (nothing more will come), or None (an agent that answers at once)."""
        data, resp = self.agent.request("GET", "log", {**self._query(stream, offset), "wait": f"{seconds:.3f}"})
        return data, resp.getheader(HELD_HEADER)


def reader(api: client.Client, j: job.MosixJob, process: str | None = None) -> Reader | None:
    """How to read the job's output (or that of its process `process`, of a gang or -S file) where its
    home keeps it; None before it has a home."""
    home = j.status.home_node or j.spec.home_node
    if home is None:
        return None
    suffix = "" if process is None else f"_{process}"  # the agents' name for a process's output
    if isinstance(api.store, local.LocalStore):
        return _local_reader(api, api.store, j, home, suffix)
    return KubeReader(api, j, home, process)


class Lines:
    """The output of a job's several processes, merged a whole line at a time so that lines of
    different processes never cut into one another (what the rest of a line is waits for its end)."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, str], int] = {}
        self.partial: dict[tuple[str, str], bytes] = {}
        self.readers: dict[str, Reader] = {}

    def copy(self, api: client.Client, j: job.MosixJob, sinks: dict[str, typing.BinaryIO]) -> None:
        """Writes each process's new whole lines; a finished process's last unterminated line too."""
        for index in sorted(j.status.processes, key=int):
            read = self.readers.get(index) or reader(api, j, index)
            if read is None:
                return
            self.readers[index] = read
            ended = j.status.processes[index].phase.finished or j.status.phase.finished
            for stream in STREAMS:
                at = (index, stream)
                data = read(stream, self.offsets.get(at, 0))
                self.offsets[at] = self.offsets.get(at, 0) + len(data)
                pending = self.partial.get(at, b"") + data
                cut = len(pending) if ended else pending.rfind(b"\n") + 1
                if cut:
                    sinks[stream].write(pending[:cut])
                    sinks[stream].flush()
                self.partial[at] = pending[cut:]


def follow(api: client.Client, name: str, *, until_finished: bool = True, poll: float = 0.2,
           need_output: bool = True) -> job.MosixJob:
    """Copies the job's output to our stdout and stderr as it arrives home; returns the job once it
    finished (the agent marks it finished only when home has all of its output). Without
    need_output, output that cannot be reached only earns a warning (mosrun still gets the exit code)."""
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    offsets = dict.fromkeys(STREAMS, 0)
    read: Reader | None = None
    unreadable = False
    merged = Lines()
    while True:
        current = api.get_job(name)
        if current.status.processes:  # a gang or -S file: each process's own stream, merged by lines
            last = current.status.phase.finished or not until_finished
            try:
                merged.copy(api, current, sinks)
            except usage.Refused as e:
                if need_output:
                    raise
                if not unreadable:
                    print(f"mosrun: {e}; waiting for the exit code only", file=sys.stderr)
                unreadable = True
            if last:
                return current
            watch = next((r for r in merged.readers.values() if isinstance(r, KubeReader)), None)
            if watch is not None and not unreadable:
                _held(watch, merged.offsets, (watch.process, "stderr"),
                      functools.partial(merged.copy, api, current, sinks))
            else:
                time.sleep(poll if isinstance(api.store, local.LocalStore) else max(poll, 1.0))
            continue
        if read is None and not unreadable:
            try:
                read = reader(api, current)
            except usage.Refused as e:  # the exit code still comes through the job's status
                if need_output:
                    raise
                print(f"mosrun: {e}; waiting for the exit code only", file=sys.stderr)
                unreadable = True
        last = current.status.phase.finished or not until_finished
        if read is not None:
            _copy_all(read, sinks, offsets)
        if last:
            return current
        if isinstance(read, KubeReader):
            _held(read, offsets, "stderr", functools.partial(_copy_all, read, sinks, offsets))
        else:
            time.sleep(poll if isinstance(api.store, local.LocalStore) else max(poll, 1.0))


def _copy_all(read: Reader, sinks: dict[str, typing.BinaryIO], offsets: dict[str, int]) -> None:
    """Writes what is new on both streams to our own."""
    for stream in STREAMS:
        data = read(stream, offsets[stream])
        if data:
            sinks[stream].write(data)
            sinks[stream].flush()
            offsets[stream] += len(data)


def _held(watch: KubeReader, offsets: Mapping[typing.Any, int], at: object, copy: Callable[[], None]) -> None:
    """Copies output as the home agent hands it over, for up to STATUS_EVERY seconds: a request held on
    `watch`'s stderr, at offsets[at], is answered when any output of the job grows, anywhere (then `copy`
    reads it all, that stream's answer too), or when the job finished (then this returns at once). A
    refusal returns too: the caller's next copy meets it and handles it."""
    deadline = time.monotonic() + STATUS_EVERY
    while (left := deadline - time.monotonic()) > 0:
        try:
            _, held = watch.hold("stderr", offsets.get(at, 0), left)
            copy()
        except usage.Refused:
            return
        if held == "finished":
            return
        if held is None:  # an agent that cannot hold requests: poll it once a second
            time.sleep(1.0)
            return
