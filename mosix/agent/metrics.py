"""The agent's Prometheus metrics (the names the chart's dashboard and alerts use)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import ssl
import subprocess
import threading
from collections.abc import Iterable

import aiohttp
import prometheus_client as prom

from mosix.agent import errors, iostats, runc, unsupported
from mosix.api import meta, node

NODE = ["node"]
LOAD = prom.Gauge("mosix_node_load", "Load: CPU-bound processes of this node's jobs", NODE)
FROZEN = prom.Gauge("mosix_node_frozen", "Frozen processes on this node", NODE)
MEM_AVAIL = prom.Gauge("mosix_node_memory_available_bytes", "Memory available", NODE)
MEM_TOTAL = prom.Gauge("mosix_node_memory_total_bytes", "Memory in all", NODE)
SWAP_AVAIL = prom.Gauge("mosix_node_swap_available_bytes", "Swap available", NODE)
SWAP_TOTAL = prom.Gauge("mosix_node_swap_total_bytes", "Swap in all", NODE)
PROCS = prom.Gauge("mosix_node_procs", "MOSIX processes running on this node", NODE)
GUESTS = prom.Gauge("mosix_node_guests", "Guest processes (home elsewhere) running here", NODE)
READ = prom.Counter("mosix_node_read_bytes", "Bytes this node's jobs read from storage", NODE)
WRITE = prom.Counter("mosix_node_write_bytes", "Bytes this node's jobs wrote to storage", NODE)
NET_IN = prom.Counter("mosix_node_net_receive_bytes", "Bytes received on the node's interfaces", NODE)
NET_OUT = prom.Counter("mosix_node_net_transmit_bytes", "Bytes sent on the node's interfaces", NODE)
SPEED = prom.Gauge("mosix_node_speed", "CPU speed in MOSIX units", NODE)
UP = prom.Gauge("mosix_node_up", "1 while the node's agent runs", NODE)
BOOT = prom.Gauge("mosix_node_boot_time_seconds", "When the node's agent started (unix time)", NODE)
JOB = ["namespace", "mosixjob"]
# A gauge, not a counter (it is set, and `clear` starts it afresh), so no `_total` suffix.
JOB_CPU = prom.Gauge("mosix_job_cpu_seconds", "CPU seconds used by a job's processes here", JOB)
JOB_RSS = prom.Gauge("mosix_job_rss_bytes", "Resident memory of a job's processes", JOB)
JOB_READ = prom.Counter("mosix_job_read_bytes", "Bytes a job's processes read here by system calls (rchar)", JOB)
JOB_WRITE = prom.Counter("mosix_job_write_bytes", "Bytes a job's processes wrote here by system calls (wchar)", JOB)
JOB_MIGRATIONS = prom.Gauge("mosix_job_migrations", "Migrations of a job so far (mosps NMIGS)", JOB)
MIGRATIONS = prom.Counter("mosix_migrations", "Migrations carried out from this node", ["reason", "node"])
FAILURES = prom.Counter("mosix_migration_failures", "Migrations that failed and were rolled back, by the "
                        "trigger (reason) and what failed (cause)", ["reason", "cause", "node"])
FREEZE = prom.Histogram("mosix_migration_freeze_seconds", "How long a migration froze its job",
                        buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30))
DURATION = prom.Histogram("mosix_migration_duration_seconds", "A migration from request to running on the peer",
                          buckets=(0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60))
MOVED = prom.Counter("mosix_migration_bytes", "Bytes sent to peers by migrations", NODE)
CHECKPOINT = prom.Histogram("mosix_checkpoint_seconds", "How long a checkpoint took",
                            buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30))
CHECKPOINT_BYTES = prom.Gauge("mosix_checkpoint_bytes", "Size of the newest checkpoint set of a job", JOB)

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def node_status(name: str, s: node.MosixNodeStatus, interval: float) -> None:
    """Publishes one sample of the node's status; rates become counters over the sample interval."""
    mb = 1024 * 1024
    LOAD.labels(name).set(s.load)
    FROZEN.labels(name).set(s.frozen)
    MEM_AVAIL.labels(name).set(s.memory.available_mb * mb)
    MEM_TOTAL.labels(name).set(s.memory.total_mb * mb)
    SWAP_AVAIL.labels(name).set(s.swap.available_mb * mb)
    SWAP_TOTAL.labels(name).set(s.swap.total_mb * mb)
    PROCS.labels(name).set(s.procs)
    GUESTS.labels(name).set(s.guests.running)
    SPEED.labels(name).set(s.speed)
    UP.labels(name).set(1)
    if s.boot_time:
        BOOT.labels(name).set(meta.seconds(s.boot_time) or 0.0)
    for counter, kbps in ((READ, s.read_kbps), (WRITE, s.write_kbps), (NET_IN, s.net_in_kbps),
                          (NET_OUT, s.net_out_kbps)):
        counter.labels(name).inc(max(0.0, kbps) * 1024 * interval)


def job_usage(pids: list[int], proc: pathlib.Path = pathlib.Path("/proc")) -> tuple[float, int]:
    """CPU seconds and resident bytes of these processes."""
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            statm = (proc / str(pid) / "statm").read_text().split()
        except (OSError, IndexError):
            continue
        cpu += (int(fields[11]) + int(fields[12])) / TICKS
        rss += int(statm[1]) * PAGE
    return cpu, rss


_io_seen: dict[tuple[str, str], tuple[dict[iostats.Process, int], dict[iostats.Process, int]]] = {}
"""job → its processes' rchar and wchar, as of the last job_io"""
_io_lock = threading.Lock()


def job_io(namespace: str, name: str, pids: Iterable[int],
           proc: pathlib.Path = pathlib.Path("/proc")) -> tuple[int, int]:
    """Bytes the job's processes read and wrote since the last call for the job.

    rchar/wchar of /proc/PID/io, not read_bytes/write_bytes: the job's I/O is what its processes read
    and wrote by system calls (files on its layer and its home directory, pipes, its output), the same
    measure the I/O policy uses (iostats). read_bytes/write_bytes count only what reaches a block
    device: nothing for a page-cache hit or a file of its home directory (FUSE, over the network), and
    buffered writes to the overlay late, when flushed, and charged to whoever flushes them.

    The processes present when the job is first seen here are a baseline, not counted (what a
    restored process's counters hold is the restore's own reading of its images, or I/O done on
    another node); a process born after that counts from its start."""
    key = (namespace, name)
    found = list(filter(None, (iostats.process_io(pid, proc) for pid in pids)))
    now = {p: r for p, r, _ in found}, {p: w for p, _, w in found}
    with _io_lock:
        before = _io_seen.get(key)
        _io_seen[key] = now
    if before is None:
        return 0, 0
    return iostats.grown(before[0], now[0]), iostats.grown(before[1], now[1])


def job(namespace: str, name: str, cpu: float, rss: int, *, io: tuple[int, int], migrations: int) -> None:
    """Publishes one sample of a job running here: `io` is what it read and wrote since the last (job_io)."""
    JOB_CPU.labels(namespace, name).set(cpu)
    JOB_RSS.labels(namespace, name).set(rss)
    JOB_READ.labels(namespace, name).inc(io[0])
    JOB_WRITE.labels(namespace, name).inc(io[1])
    JOB_MIGRATIONS.labels(namespace, name).set(migrations)


def forget_job(namespace: str, name: str) -> None:
    """The job ended here: its series go."""
    job_left(namespace, name)
    with contextlib.suppress(KeyError):
        CHECKPOINT_BYTES.remove(namespace, name)


def job_left(namespace: str, name: str) -> None:
    """The job runs on another node now: its usage series go (that node's agent publishes them); the size of
    its newest set, written here and still there, stays."""
    for metric in (JOB_CPU, JOB_RSS, JOB_READ, JOB_WRITE, JOB_MIGRATIONS):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
    with _io_lock:
        _io_seen.pop((namespace, name), None)


# What failed, for mosix_migration_failures' `cause`: a closed set, so the label stays small.
CAUSES = ("peer-unreachable", "refused", "transfer", "dump", "restore", "timeout", "locked", "unsupported", "other")
_PAGE_XFER_ERROR = "Error (criu/page-xfer.c"  # in the log CRIU's dump wrote, when its pages could not be sent
_REFUSAL = re.compile(r" refused (?P<sink>a page server for )?\S+: (?P<status>\d{3})\b")


def failure_cause(e: BaseException) -> str:
    """What made a migration fail, one of CAUSES, from the exception it raised (MigrationFailed and what
    it was raised from, or Unsupported): the innermost exception of the chain that says, since the
    outer ones only add where it happened."""
    chain: list[BaseException] = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__  # type: ignore[assignment]
    for err in reversed(chain):
        if (cause := _cause_of(err)) is not None:
            return cause
    return "other"


def _cause_of(e: BaseException) -> str | None:
    if isinstance(e, unsupported.Unsupported):
        return "unsupported"
    if isinstance(e, TimeoutError | subprocess.TimeoutExpired):
        return "timeout"
    if isinstance(e, ssl.SSLError | aiohttp.ClientSSLError):
        return "refused"  # the TLS handshake: one side is not of this cluster
    if isinstance(e, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return "peer-unreachable"
    if isinstance(e, aiohttp.ClientError | ConnectionError):
        return "transfer"
    if isinstance(e, errors.CheckpointError | runc.RuncError):  # runc and CRIU run here only to dump
        return "transfer" if _PAGE_XFER_ERROR in str(e) else "dump"  # CRIU lost the peer's page server
    if not isinstance(e, errors.AgentError):
        return None
    text = str(e)
    if " is locked to " in text:
        return "locked"
    if (m := _REFUSAL.search(text)) is not None:  # the peer answered no: a failed restore there, or a refusal
        return "restore" if m["status"].startswith("5") and not m["sink"] else "refused"
    if "page stream" in text:
        return "transfer"
    if "dump" in text:
        return "dump"
    return None
