"""The input side of home-node I/O without containers: the home's store of a job's input, and the feeder
that writes it into a pipe and takes unread input back at a dump."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from mosix.agent import errors, homeio, stdin


def test_the_home_keeps_input_until_it_ends(tmp_path: pathlib.Path) -> None:
    home = homeio.HomeOutput(tmp_path)
    assert home.read_input("j1", 0) == (b"", False)
    assert home.add_input("j1", b"ab") == 2
    home.add_input("j1", b"cd")
    assert home.read_input("j1", 1) == (b"bcd", False)
    home.end_input("j1")
    assert home.read_input("j1", 1) == (b"bcd", True)
    assert home.read_input("j1", 1, limit=1) == (b"b", False)  # more follows what was read
    assert home.read_input("j1", 4) == (b"", True)
    with pytest.raises(errors.JobError, match="ended"):
        home.add_input("j1", b"late")
    assert oct((tmp_path / "j1" / "stdin").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(errors.AgentError, match="bad job key"):
        home.read_input("../etc", 0)


def _read(fd: int, count: int) -> bytes:
    """Read like a job reading small pieces: at least count bytes, a little at a time."""
    got = b""
    while len(got) < count and (piece := os.read(fd, 7)):
        got += piece
    return got


def test_unread_input_is_taken_back_at_a_hold_and_fed_again_after(tmp_path: pathlib.Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(1000))
    r, w = os.pipe()  # r: the job's end; the feeder reads back through a description of its own
    feeder = stdin.Feeder(w, stdin.reopen_reader(r), lambda offset: (data[offset:], True))
    feeder.start()
    try:
        first = _read(r, 100)
        while stdin.pipe_pending(r) == 0:  # the feeder has written on behind what was read
            time.sleep(0.01)
        assert feeder.hold() == len(first)  # the job "paused": it consumed that much, the rest is taken back
        assert os.get_blocking(r)  # the job's own reads stay blocking
        assert stdin.pipe_pending(r) == 0
        feeder.release()
        rest = _read(r, len(data) - len(first))
        assert first + rest == data  # once each, in order
        deadline = time.monotonic() + 30
        while not feeder.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert feeder.closed and os.read(r, 1) == b""  # EOF once the input ended and the pipe is empty
    finally:
        feeder.stop()
        os.close(r)


def test_a_hold_gives_the_offset_a_restore_feeds_from(tmp_path: pathlib.Path) -> None:
    data = b"0123456789" * 100
    r, w = os.pipe()
    feeder = stdin.Feeder(w, stdin.reopen_reader(r), lambda offset: (data[offset:], False))
    feeder.start()
    try:
        got = _read(r, 37)
        while stdin.pipe_pending(r) == 0:  # the feeder has refilled the pipe behind what was read
            time.sleep(0.01)
        assert feeder.hold() == len(got)  # exactly what left the pipe, not what was written into it
    finally:
        feeder.stop()
        os.close(r)
