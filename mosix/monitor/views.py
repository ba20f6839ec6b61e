"""What each monitor view shows: pure functions from a snapshot of nodes and a time to a chart."""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mosix.api import node
from mosix.cli import nodestate


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The nodes as read at `now`, with the cluster's dead-after setting: all a view may look at."""

    nodes: tuple[node.MosixNode, ...]
    now: datetime.datetime
    dead_after: float = 15.0


@dataclasses.dataclass(frozen=True)
class Segment:
    """One stacked part of a bar; `part` names its colour in the scheme (load, frozen, used, free, ...)."""

    part: str
    value: float


@dataclasses.dataclass(frozen=True)
class Column:
    """One node's bar: stacked segments and a short label (the value, or the text of a text view)."""

    number: int
    name: str
    alive: bool
    segments: tuple[Segment, ...]
    label: str

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


@dataclasses.dataclass(frozen=True)
class Chart:
    """A whole view: title, unit, one column per shown node, the top of the scale, and what is hidden."""

    key: str
    title: str
    unit: str
    columns: tuple[Column, ...]
    scale: float
    parts: tuple[str, ...]
    text: bool = False
    hidden_dead: int = 0
    note: str = ""


@dataclasses.dataclass(frozen=True)
class View:
    """A named view: its title, unit, the parts of its bars, and how to read one node's bar."""

    key: str
    title: str
    unit: str
    parts: tuple[str, ...]
    read: Callable[[node.MosixNode, datetime.datetime], tuple[tuple[float, ...], str]]
    text: bool = False
    floor: float = 1.0
    fixed_scale: float | None = None
    note: str = ""


def nice_scale(top: float, floor: float = 1.0) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `top`, so the scale reads easily."""
    top = max(top, floor)
    power = 10.0 ** math.floor(math.log10(top))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= top:
            return step * power
    return 10.0 * power


def compact(value: float) -> str:
    """A number in at most five characters, so labels fit under narrow bars: 0.75, 12.5, 830, 4.1k, 12M."""
    if value < 100:
        return str(int(value)) if value == int(value) else (f"{value:.2f}" if value < 10 else f"{value:.1f}")
    if value < 1000:
        return f"{value:.0f}"
    for div, suffix in ((1e3, "k"), (1e6, "M")):
        if value < div * 1000:
            shown = value / div
            return f"{shown:.1f}{suffix}" if shown < 10 else f"{shown:.0f}{suffix}"
    return f"{value / 1e9:.1f}G"


def megabytes(mb: float) -> str:
    """Memory sizes as people read them: 512M, 6.0G, 1.5T."""
    if mb < 1024:
        return f"{mb:.0f}M"
    if mb < 1024 * 1024:
        return f"{mb / 1024:.1f}G"
    return f"{mb / 1024 / 1024:.1f}T"


def duration(seconds: float) -> str:
    """Uptime as mmon prints it: 3d04h, 5h12m, 7m."""
    s = max(0, int(seconds))
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m"


def _when(stamp: str | None) -> datetime.datetime | None:
    if not stamp:
        return None
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _load(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return (n.status.load,), compact(n.status.load)


def _load_frozen(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return (n.status.load, float(n.status.frozen)), f"{compact(n.status.load)}+{n.status.frozen}"


def _frozen(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return (float(n.status.frozen),), str(n.status.frozen)


def _used_free(m: node.Memory) -> tuple[tuple[float, ...], str]:
    free = min(m.available_mb, m.total_mb)
    return ((m.total_mb - free) / 1024, free / 1024), f"{megabytes(free)}/{megabytes(m.total_mb)}"


def _memory(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return _used_free(n.status.memory)


def _swap(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return _used_free(n.status.swap)


def _disk(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    """Nodes report no disk space yet; when a status `disk` (available/total) appears, it is shown."""
    disk: Any = getattr(n.status, "disk", None)
    if isinstance(disk, node.Memory) and disk.total_mb:
        return _used_free(disk)
    return (), "n/a"


def _util(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return (float(n.status.util),), f"{n.status.util}%"


def _grid(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    g = n.status.guests
    return (float(n.status.local_procs), float(g.running)), f"{n.status.local_procs}+{g.running}/{g.max}"


def _rates(*fields: str) -> Callable[[node.MosixNode, datetime.datetime], tuple[tuple[float, ...], str]]:
    """A view of the node's KB/s status fields, stacked, labelled with their sum."""

    def value(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
        rates = tuple(float(getattr(n.status, f)) for f in fields)
        return rates, compact(sum(rates))

    return value


def _speed(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return (float(n.status.speed),), f"{compact(float(n.status.speed))}x{n.status.cpus}"


STATE_TEXT = {
    node.NodeState.RUNNING: "Running",
    node.NodeState.BLOCKED: "Blocked",
    node.NodeState.EXPELLING: "Expelling",
    node.NodeState.DOWN: "Down",
}


def _status(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    flags = [f for f, on in (("block", n.spec.block), ("expel", n.spec.expel)) if on]
    return (), STATE_TEXT[n.status.state] + (f" ({','.join(flags)})" if flags else "")


def _version(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    return (), n.status.version or "unknown"


def _uptime(n: node.MosixNode, now: datetime.datetime) -> tuple[tuple[float, ...], str]:
    boot = _when(n.status.boot_time)
    if boot is None:
        return (), "unknown"
    seconds = (now - boot).total_seconds()
    return (seconds / 3600,), duration(seconds)


VIEWS: dict[str, View] = {
    v.key: v
    for v in (
        View("load", "Load (relative)", "CPU-bound processes", ("load",), _load),
        View("load+frozen", "Load + frozen processes", "processes", ("load", "frozen"), _load_frozen),
        View("frozen", "Frozen processes", "processes", ("frozen",), _frozen),
        View("memory", "Memory (used + free)", "GB", ("used", "free"), _memory, note="label: free/total"),
        View("swap", "Swap (used + free)", "GB", ("used", "free"), _swap, note="label: free/total"),
        View("disk", "Disk (used + free)", "GB", ("used", "free"), _disk, note="n/a: the node reports no disk"),
        View("util", "Utilization", "%", ("util",), _util, fixed_scale=100.0),
        View(
            "grid",
            "Grid: local + guest processes",
            "processes",
            ("local", "guest"),
            _grid,
            note="label: local+guests/max guests",
        ),
        View("read", "Read I/O rate", "KB/s", ("read",), _rates("read_kbps")),
        View("write", "Write I/O rate", "KB/s", ("write",), _rates("write_kbps")),
        View("io", "Total I/O (read + write)", "KB/s", ("read", "write"), _rates("read_kbps", "write_kbps")),
        View("net-in", "Network in", "KB/s", ("in",), _rates("net_in_kbps")),
        View("net-out", "Network out", "KB/s", ("out",), _rates("net_out_kbps")),
        View("net", "Network total (in + out)", "KB/s", ("in", "out"), _rates("net_in_kbps", "net_out_kbps")),
        View("speed", "CPU speed", "MOSIX units", ("speed",), _speed, note="label: speed x CPUs"),
        View("status", "Status", "", (), _status, text=True),
        View("version", "MOSIX version", "", (), _version, text=True),
        View("uptime", "Uptime", "hours", ("uptime",), _uptime),
    )
}


def chart(key: str, snap: Snapshot, *, show_dead: bool) -> Chart:
    """The view `key` of the snapshot; dead nodes are left out (and counted) unless `show_dead`."""
    view = VIEWS[key]
    columns: list[Column] = []
    hidden = 0
    for n in sorted(snap.nodes, key=lambda n: n.spec.number):
        alive = nodestate.is_alive(n, snap.now, snap.dead_after)
        if not alive:
            if not show_dead:
                hidden += 1
                continue
            columns.append(Column(n.spec.number, n.name, False, (), "DEAD"))
            continue
        values, label = view.read(n, snap.now)
        segments = tuple(Segment(p, v) for p, v in zip(view.parts, values, strict=False))
        columns.append(Column(n.spec.number, n.name, True, segments, label))
    top = max((c.total for c in columns), default=0.0)
    scale = view.fixed_scale or nice_scale(top, view.floor)
    return Chart(key, view.title, view.unit, tuple(columns), scale, view.parts, view.text, hidden, view.note)


def next_view(cycles: Mapping[str, Sequence[str]], pressed: str, current: str) -> str:
    """The view a key leads to: its first view, or the next one when pressed again (consecutive presses cycle)."""
    cycle = cycles[pressed]
    if current in cycle:
        return cycle[(list(cycle).index(current) + 1) % len(cycle)]
    return cycle[0]
