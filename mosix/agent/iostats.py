"""Per-job I/O statistics, decayed as MOSIX decays a process's statistics (mosrun -d).

A job's I/O is what its processes read and wrote through system calls (`rchar` + `wchar` of
/proc/PID/io: files, pipes and its output alike). That counter works the same for every job
container here, whereas the cgroup's blkio/io.stat on this machine (cgroup v1, buffered writes
to the overlay) sees only the little that reaches a disk, late and unattributed.

Away from home, the I/O that crosses the link is kept apart too: MOSIX's remote system calls. It is
the job's output the agent forwards home, and its working directory's traffic, which its FUSE
process carries (every byte of it passes that process twice: from /dev/fuse to the link, or from
the link to /dev/fuse, so half its rchar + wchar). Its `-X` private files and its own root file
system are local wherever it runs, and never count there.

The rate is a decayed average: bytes and elapsed seconds both keep `decay`/10000 of themselves
per second, so a young job's rate is its mean so far, an old one's weighs recent seconds most,
10000 never forgets and 0 keeps only the last interval. `clear` is the reset entry point
(`/run/mosix/clear` in the job's container).
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
import time
from collections.abc import Callable, Iterable

DEFAULT_DECAY = 9976
"""mosrun's default -d: of 10000, how much of the statistics survive each second (MOSIX's own)."""

PROC = pathlib.Path("/proc")

Process = tuple[int, int]  # (pid, start time in clock ticks): a pid reused later is another process


@dataclasses.dataclass
class Rate:
    """Bytes per second as a decayed average; `keep` is the fraction kept per second."""

    keep: float
    bytes: float = 0.0
    seconds: float = 0.0

    def add(self, amount: float, elapsed: float) -> None:
        weight = 1.0 if self.keep >= 1.0 else self.keep**elapsed
        self.bytes = self.bytes * weight + amount
        self.seconds = self.seconds * weight + elapsed

    def per_second(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class Reading:
    """One job's rates in KB/s: all its I/O, and what crossed the link to home while it ran away."""

    io_kbps: float
    remote_kbps: float


@dataclasses.dataclass
class _Job:
    io: Rate
    remote: Rate
    last: float
    counters: dict[Process, int] = dataclasses.field(default_factory=dict)
    link: dict[Process, int] = dataclasses.field(default_factory=dict)  # of the processes carrying its remote I/O


def process_io(pid: int, proc: pathlib.Path = PROC) -> tuple[Process, int, int] | None:
    """The process's identity, and its bytes read and written by system calls; None once it is gone."""
    try:
        start = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19])
        fields = dict(line.split(":", 1) for line in (proc / str(pid) / "io").read_text().splitlines() if ":" in line)
        return (pid, start), int(fields["rchar"]), int(fields["wchar"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def grown(before: dict[Process, int], now: dict[Process, int]) -> int:
    """Bytes the processes in `now` moved since `before` (all of it for one new since then)."""
    return sum(max(0, value - before.get(key, 0)) for key, value in now.items())


class Statistics:
    """The decayed I/O rates of the jobs on one agent, by container name; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, proc: pathlib.Path = PROC) -> None:
        self._clock = clock
        self._proc = proc
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def sample(self, name: str, pids: Iterable[int], decay: int | None = None, remote_bytes: int = 0,
               link_pids: Iterable[int] = ()) -> Reading | None:
        """Adds the I/O the job's processes `pids` did since the last sample, and its remote I/O meanwhile:
        `remote_bytes` forwarded home, and half what `link_pids` (its FUSE process) moved; returns the
        rates, or None on the job's first sample here (a baseline: what its processes did before this
        agent watched them is not its to count). `decay` is -d (None: `DEFAULT_DECAY`)."""
        keep = (DEFAULT_DECAY if decay is None else decay) / 10000.0
        now = self._clock()
        counters = self._counters(pids)
        link = self._counters(link_pids)
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                self._jobs[name] = _Job(Rate(keep), Rate(keep), now, counters, link)
                return None
            job.io.keep = job.remote.keep = keep
            elapsed = now - job.last
            if elapsed <= 0:
                return self._reading(job)
            job.io.add(grown(job.counters, counters), elapsed)
            job.remote.add(remote_bytes + grown(job.link, link) / 2, elapsed)
            job.counters, job.link, job.last = counters, link, now
            return self._reading(job)

    def _counters(self, pids: Iterable[int]) -> dict[Process, int]:
        found = (process_io(pid, self._proc) for pid in pids)
        return {process: read + written for process, read, written in filter(None, found)}

    def reading(self, name: str) -> Reading | None:
        """The job's rates as of its last sample, or None when it is not watched."""
        with self._lock:
            job = self._jobs.get(name)
            return None if job is None else self._reading(job)

    def clear(self, name: str) -> None:
        """Forgets the job's history (MOSIX's `clear`): its rates restart from the next sample."""
        with self._lock:
            job = self._jobs.get(name)
            if job is not None:
                job.io = Rate(job.io.keep)
                job.remote = Rate(job.remote.keep)
                job.last = self._clock()

    def forget(self, name: str) -> None:
        """Stops watching the job (it ended or left this node)."""
        with self._lock:
            self._jobs.pop(name, None)

    @staticmethod
    def _reading(job: _Job) -> Reading:
        return Reading(job.io.per_second() / 1024.0, job.remote.per_second() / 1024.0)
