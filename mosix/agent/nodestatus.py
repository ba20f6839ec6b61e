"""The node's `mosctl status` fields, sampled from /proc and the agent's own jobs.

Several local nodes share one machine, so a node's load is what its own jobs put on it: the
runnable tasks of its containers, smoothed like the kernel's load average. Memory and swap are
the machine's.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import pathlib
import time

from mosix import __version__
from mosix.api import meta, node

PROC = pathlib.Path("/proc")


def smoothed(previous: float, sample: float, elapsed: float, period: float = 5.0) -> float:
    """An exponentially decaying average, like the kernel's load average over `period` seconds."""
    if elapsed <= 0:
        return previous
    keep = math.exp(-elapsed / period)
    return previous * keep + sample * (1 - keep)


def kb_per_s(new: int, old: int, elapsed: float) -> float:
    """A byte counter's rate in KB/s; 0 before the second sample or when the counter went back."""
    return max(0.0, (new - old) / 1024 / elapsed) if elapsed > 0 else 0.0


def descendants(pid: int, proc: pathlib.Path = PROC) -> list[int]:
    """pid and every process below it (through /proc/PID/task/TID/children)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in (proc / str(current) / "task").glob("*"):
            try:
                stack += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    return found


def runnable_tasks(pids: list[int], proc: pathlib.Path = PROC) -> int:
    """How many threads of these processes are running or ready to run (state R)."""
    count = 0
    for pid in pids:
        for task in (proc / str(pid) / "task").glob("*"):
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[-1].split()[0] == "R":
                count += 1
    return count


def io_bytes(pids: list[int], proc: pathlib.Path = PROC) -> tuple[int, int]:
    """Bytes read and written through storage by these processes, summed."""
    read = written = 0
    for pid in pids:
        try:
            fields = dict(line.split(": ") for line in (proc / str(pid) / "io").read_text().splitlines())
        except (OSError, ValueError):
            continue
        read += int(fields.get("read_bytes", 0))
        written += int(fields.get("write_bytes", 0))
    return read, written


def meminfo(proc: pathlib.Path = PROC) -> dict[str, int]:
    """/proc/meminfo in kB."""
    values = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return values


def net_bytes(proc: pathlib.Path = PROC) -> tuple[int, int]:
    """Bytes received and sent on every interface but loopback."""
    received = sent = 0
    for line in (proc / "net" / "dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        cols = rest.split()
        received, sent = received + int(cols[0]), sent + int(cols[8])
    return received, sent


def measure_speed(seconds: float = 0.2) -> int:
    """MOSIX speed units: simple integer loops per millisecond on one CPU, measured once at start."""
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            count += 1
    return max(1, int(count / (seconds * 1000)))


@dataclasses.dataclass
class JobsHere:
    """What the agent knows of the jobs on its node, for one sample."""

    pids: list[int]  # init pids of running containers
    frozen: int
    guests: int  # running here, home elsewhere


@dataclasses.dataclass
class Sampler:
    """Turns successive samples into the node's status; keeps what the rates and averages need."""

    cpus: int
    speed: int
    boot_time: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    load: float = 0.0
    _last: float = 0.0
    _io: tuple[int, int] = (0, 0)
    _net: tuple[int, int] = (0, 0)

    @property
    def last_sample(self) -> float:
        """When the previous sample was taken (monotonic seconds; 0 before the first)."""
        return self._last

    def sample(self, spec: node.MosixNodeSpec, here: JobsHere, *, queue_up: bool,
               proc: pathlib.Path = PROC) -> node.MosixNodeStatus:
        now = time.monotonic()
        elapsed = now - self._last if self._last else 0.0
        tasks = [p for pid in here.pids for p in descendants(pid, proc)]
        self.load = smoothed(self.load, float(runnable_tasks(tasks, proc)), elapsed) if elapsed else \
            float(runnable_tasks(tasks, proc))
        io, net = io_bytes(tasks, proc), net_bytes(proc)
        read_kbps, write_kbps = kb_per_s(io[0], self._io[0], elapsed), kb_per_s(io[1], self._io[1], elapsed)
        net_in, net_out = kb_per_s(net[0], self._net[0], elapsed), kb_per_s(net[1], self._net[1], elapsed)
        self._last, self._io, self._net = now, io, net
        mem = meminfo(proc)
        state = node.NodeState.EXPELLING if spec.expel else node.NodeState.BLOCKED if spec.block \
            else node.NodeState.RUNNING
        up, down = node.DaemonState.UP, node.DaemonState.DOWN
        return node.MosixNodeStatus(
            state=state, load=round(self.load, 2), speed=self.speed, cpus=self.cpus, frozen=here.frozen,
            util=min(100, round(100 * self.load / self.cpus)) if self.cpus else 0, avail=True,
            procs=len(here.pids), accept=not (spec.block or spec.expel),
            memory=node.Memory(available_mb=mem.get("MemAvailable", 0) // 1024, total_mb=mem["MemTotal"] // 1024),
            swap=node.Memory(available_mb=mem.get("SwapFree", 0) // 1024, total_mb=mem.get("SwapTotal", 0) // 1024),
            daemons=node.Daemons(master=up, mosix=up, queue=up if queue_up else down, remote=up),
            guests=node.Guests(running=here.guests, max=spec.max_guests),
            local_procs=len(here.pids) - here.guests,
            read_kbps=round(read_kbps, 1), write_kbps=round(write_kbps, 1),
            net_in_kbps=round(net_in, 1), net_out_kbps=round(net_out, 1),
            version=__version__, boot_time=self.boot_time,
            heartbeat=meta.now_rfc3339(),
        )


def default_cpus() -> int:
    return os.cpu_count() or 1
