"""The agent's Prometheus metrics (the names the chart's dashboard and alerts use)."""

from __future__ import annotations

import contextlib
import os
import pathlib

import prometheus_client as prom

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
JOB_CPU = prom.Gauge("mosix_job_cpu_seconds_total", "CPU seconds used by a job's processes here", JOB)
JOB_RSS = prom.Gauge("mosix_job_rss_bytes", "Resident memory of a job's processes", JOB)
MIGRATIONS = prom.Counter("mosix_migrations", "Migrations carried out from this node", ["reason", "node"])
FAILURES = prom.Counter("mosix_migration_failures", "Migrations that failed and were rolled back",
                        ["reason", "node"])
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


def job(namespace: str, name: str, cpu: float, rss: int) -> None:
    JOB_CPU.labels(namespace, name).set(cpu)
    JOB_RSS.labels(namespace, name).set(rss)


def forget_job(namespace: str, name: str) -> None:
    for gauge in (JOB_CPU, JOB_RSS, CHECKPOINT_BYTES):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
