"""A node's mosctl view: alive or dead from its heartbeat, and the tutorial's status text."""

from __future__ import annotations

import datetime

from mosix.api import node


def is_alive(n: node.MosixNode, now: datetime.datetime, dead_after: float) -> bool:
    """MosixNode.alive, for callers holding a datetime."""
    return n.alive(now.timestamp(), dead_after)


def _gb(mb: int) -> str:
    return f"{mb / 1024:.1f}GB"


def status_text(n: node.MosixNode, *, alive: bool, local: bool) -> str:
    """mosctl status (and, with local=True, mosctl localstatus) as in the tutorial."""
    s = n.status
    if not alive:
        return "Status: Not responding (node is dead or its agent is down)\n"
    load = f"{s.load:.2f} (equivalent to about {s.load:.2f} CPU processes)" if s.load else "0"
    if s.accept and not n.spec.block:
        accept = "Yes, will welcome processes from here"
    else:
        accept = "No, will not accept processes" + (" (blocked)" if n.spec.block else "")
    lines = [
        f"Status: {s.state.value}",
        f"Load: {load}",
        f"Speed: {s.speed} units",
        f"CPUS: {s.cpus}",
        f"Frozen: {s.frozen}",
        f"Util: {s.util}%",
        f"Avail: {'YES' if s.avail else 'NO'}",
        f"Procs: Running {s.procs} MOSIX processes",
        f"Accept: {accept}",
        f"Memory: Available {s.memory.available_mb}MB/{s.memory.total_mb}MB",
    ]
    if local:
        lines += [
            f"Swap: Available {_gb(s.swap.available_mb)}/{_gb(s.swap.total_mb)}",
            "Daemons:",
            f"Master Daemon: {s.daemons.master.value}",
            f"MOSIX Daemon : {s.daemons.mosix.value}",
            f"Queue Manager: {s.daemons.queue.value}",
            f"Remote Daemon: {s.daemons.remote.value}",
            f"Guest processes from grid: {s.guests.running}/{s.guests.max}",
        ]
    return "\n".join(lines) + "\n"
