"""The keys of mon and mmon: which views each key cycles through, and the help that lists them all."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class KeyMap:
    """View keys (consecutive presses cycle through their views) and the help lines, in order."""

    name: str
    cycles: dict[str, tuple[str, ...]]
    help: tuple[tuple[str, str], ...]
    clusters: bool = False

    @property
    def first(self) -> str:
        return next(iter(self.cycles.values()))[0]


COMMON_HELP = (
    ("d", "show dead nodes (heartbeat older than the cluster's deadAfterSeconds, or never reported)"),
    ("D", "hide dead nodes (the default; the footer counts them)"),
    ("h", "this help (h or Escape again: back)"),
    ("q", "quit"),
)

MON = KeyMap(
    "mon",
    {"l": ("load",), "f": ("frozen",), "m": ("memory", "swap"), "u": ("util",)},
    (
        ("l", "CPU load (relative)"),
        ("f", "frozen processes"),
        ("m", "memory (used + free); pressed again: swap (used + free)"),
        ("u", "utilization"),
        *COMMON_HELP,
    ),
)

MMON = KeyMap(
    "mmon",
    {
        "l": ("load", "load+frozen", "frozen"),
        "f": ("frozen",),
        "m": ("memory", "swap", "disk"),
        "u": ("util",),
        "g": ("grid",),
        "i": ("read", "write", "io"),
        "o": ("net-in", "net-out", "net"),
        "s": ("speed", "status", "version", "uptime"),
    },
    (
        ("l", "load; again: load + frozen processes; again: frozen processes"),
        ("f", "frozen processes"),
        ("m", "memory (used + free); again: swap; again: disk space (n/a when nodes do not report it)"),
        ("u", "utilization"),
        ("g", "grid status: local and guest processes, guests running/max"),
        ("i", "read I/O rate; again: write rate; again: total I/O"),
        ("o", "network in; again: out; again: total"),
        ("s", "CPU speed; again: status; again: MOSIX version; again: uptime"),
        ("<", "previous cluster (of -c)"),
        (">", "next cluster (of -c)"),
        *COMMON_HELP,
    ),
    clusters=True,
)


def help_text(keys: KeyMap) -> str:
    """Every key, one a line."""
    lines = [f"{keys.name}: keys", ""]
    lines += [f"  {key}   {what}" for key, what in keys.help]
    return "\n".join(lines) + "\n"
