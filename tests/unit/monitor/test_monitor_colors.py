"""~/.mmon.cfg: `key = colour` lines over the defaults; every bad line reported, none fatal."""

from __future__ import annotations

import pathlib

import pytest

from mosix.monitor import colors


def test_good_lines_override_the_defaults() -> None:
    scheme, problems = colors.parse("# mine\nload = green\nfrozen=#ff0000\n\nBackground = black\n")
    assert problems == []
    assert (scheme["load"], scheme["frozen"], scheme["background"]) == ("green", "#ff0000", "black")
    assert scheme["used"] == colors.DEFAULTS["used"]


def test_bad_lines_are_reported_with_their_line_numbers() -> None:
    scheme, problems = colors.parse("load = green\nloud = red\nfrozen = blurple\nno equals sign\nfree =\n", "cfg")
    assert scheme["load"] == "green" and scheme["frozen"] == colors.DEFAULTS["frozen"]
    assert [p.split(":")[0] for p in problems] == ["cfg line 2", "cfg line 3", "cfg line 4", "cfg line 5"]
    assert "unknown key 'loud'" in problems[0]
    assert "'blurple' is not a colour" in problems[1]


def test_the_file_is_read_from_home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert colors.load() == (colors.DEFAULTS, [])
    (tmp_path / ".mmon.cfg").write_text("load = blue\n")
    assert colors.load()[0]["load"] == "blue"
    (tmp_path / ".mmon.cfg").write_bytes(b"\xff\xfe")
    scheme, problems = colors.load()
    assert scheme == colors.DEFAULTS and "cannot read" in problems[0]
