"""mmon's private colour scheme: `key = colour` lines in ~/.mmon.cfg; bad lines are reported, never fatal."""

from __future__ import annotations

import pathlib

import rich.color

Scheme = dict[str, str]

DEFAULTS: Scheme = {
    "load": "green",
    "frozen": "red",
    "used": "yellow",
    "free": "green",
    "util": "cyan",
    "local": "blue",
    "guest": "magenta",
    "read": "cyan",
    "write": "yellow",
    "in": "cyan",
    "out": "magenta",
    "speed": "green",
    "uptime": "blue",
    "dead": "red",
    "scale": "bright_black",
}
EXTRA_KEYS = ("background", "text", "title")
KEYS = (*DEFAULTS, *EXTRA_KEYS)
EXAMPLE = """# ~/.mmon.cfg: one `key = colour` a line; colours are names (green), #rrggbb or color(N)
load = green
frozen = red
background = black
"""


def default_path() -> pathlib.Path:
    return pathlib.Path.home() / ".mmon.cfg"


def parse(text: str, source: str = "~/.mmon.cfg") -> tuple[Scheme, list[str]]:
    """The default scheme with the file's choices over it, and one message per line that could not be used."""
    scheme = dict(DEFAULTS)
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            continue  # only whole-line comments: #rrggbb is a colour
        if not line:
            continue
        key, eq, value = (part.strip() for part in line.partition("="))
        where = f"{source} line {number}"
        if not eq or not key or not value:
            problems.append(f"{where}: expected `key = colour`, got {raw.strip()!r}")
            continue
        key = key.lower()
        if key not in KEYS:
            problems.append(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})")
            continue
        try:
            rich.color.Color.parse(value)
        except rich.color.ColorParseError:
            problems.append(f"{where}: {value!r} is not a colour")
            continue
        scheme[key] = value
    return scheme, problems


def load(path: pathlib.Path | None = None) -> tuple[Scheme, list[str]]:
    """The scheme from the file (default ~/.mmon.cfg); a missing file is the default scheme, silently."""
    path = path or default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(DEFAULTS), []
    except (OSError, UnicodeDecodeError) as e:
        return dict(DEFAULTS), [f"{path}: cannot read ({e})"]
    return parse(text, str(path))
