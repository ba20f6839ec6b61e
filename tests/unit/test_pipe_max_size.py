"""The agent raises fs.pipe-max-size for CRIU's page server, never lowers it, and only warns when it cannot."""

from __future__ import annotations

import logging
import pathlib

import pytest

from mosix.agent import pageserver


@pytest.mark.parametrize(("before", "after"), [("1048576\n", "4194304"), ("8388608\n", "8388608\n")])
def test_raised_to_4_mib_never_lowered(tmp_path: pathlib.Path, before: str, after: str) -> None:
    sysctl = tmp_path / "pipe-max-size"
    sysctl.write_text(before)
    pageserver.raise_pipe_max_size(sysctl)
    assert sysctl.read_text() == after


def test_an_unreadable_setting_is_a_warning(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        pageserver.raise_pipe_max_size(tmp_path / "missing")
    assert "could not raise fs.pipe-max-size" in caplog.text
