"""The agent's decayed per-job I/O statistics (mosix.agent.iostats), over a fake /proc and clock."""

from __future__ import annotations

import pathlib

import pytest

from mosix.agent import iostats


class World:
    """A /proc with processes whose I/O counters the test sets, and a clock it moves."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def proc(self, pid: int, rchar: int, wchar: int, start: int = 5) -> None:
        d = self.root / str(pid)
        d.mkdir(exist_ok=True)
        stat = [str(pid), "(sh)", "S"] + ["0"] * 18 + [str(start)] + ["0"] * 10  # starttime is field 22
        (d / "stat").write_text(" ".join(stat) + "\n")
        (d / "io").write_text(f"rchar: {rchar}\nwchar: {wchar}\nsyscr: 1\nread_bytes: 0\n")


def kbps(reading: iostats.Reading | None) -> float:
    assert reading is not None, "a sample after the baseline has a rate"
    return reading.io_kbps


@pytest.fixture
def world(tmp_path: pathlib.Path) -> World:
    return World(tmp_path)


def test_reads_proc_io(world: World) -> None:
    world.proc(7, 100, 23, start=42)
    assert iostats.process_io(7, world.root) == ((7, 42), 100, 23)
    assert iostats.process_io(8, world.root) is None


def test_rate_without_decay_is_the_mean(world: World) -> None:
    stats = iostats.Statistics(world.clock, world.root)
    world.proc(7, 0, 0)
    assert stats.sample("j", [7], decay=10000) is None  # the baseline
    for second in range(1, 11):
        world.now += 1.0
        world.proc(7, 0, 1024 * 100 * second if second <= 5 else 1024 * 500)  # 100 KB/s for 5 s, then idle
        reading = kbps(stats.sample("j", [7], decay=10000))
    assert reading == pytest.approx(50.0)


def test_decay_zero_keeps_only_the_last_interval(world: World) -> None:
    stats = iostats.Statistics(world.clock, world.root)
    world.proc(7, 0, 0)
    stats.sample("j", [7], decay=0)
    world.now += 1.0
    world.proc(7, 0, 1024 * 1000)
    assert kbps(stats.sample("j", [7], decay=0)) == pytest.approx(1000.0)
    world.now += 1.0
    assert kbps(stats.sample("j", [7], decay=0)) == pytest.approx(0.0)


def test_default_decay_forgets_slowly(world: World) -> None:
    """MOSIX's 9976: after a burst, the rate falls, but far slower than with a small decay."""
    slow, fast = iostats.Statistics(world.clock, world.root), iostats.Statistics(world.clock, world.root)
    world.proc(7, 0, 0)
    slow.sample("j", [7])
    fast.sample("j", [7], decay=5000)
    world.now += 10.0
    world.proc(7, 0, 1024 * 1000 * 10)  # 1000 KB/s for 10 s
    assert kbps(slow.sample("j", [7])) == pytest.approx(1000.0)
    assert kbps(fast.sample("j", [7], decay=5000)) == pytest.approx(1000.0)
    world.now += 10.0  # then 10 s of nothing
    kept, lost = kbps(slow.sample("j", [7])), kbps(fast.sample("j", [7], decay=5000))
    assert 450.0 < kept < 550.0  # about the mean: 9976 barely decays in 20 s
    assert lost < 5.0


def test_children_reused_pids_and_exits(world: World) -> None:
    stats = iostats.Statistics(world.clock, world.root)
    world.proc(7, 0, 0)
    stats.sample("j", [7], decay=10000)
    world.now += 1.0
    world.proc(7, 0, 1024)
    world.proc(8, 2048, 0, start=9)  # a child born since the last sample: all its I/O is new
    assert kbps(stats.sample("j", [7, 8], decay=10000)) == pytest.approx(3.0)
    world.now += 1.0
    world.proc(8, 1024, 0, start=11)  # pid 8 reused by another process: not a negative delta
    assert kbps(stats.sample("j", [7, 8], decay=10000)) == pytest.approx(4.0 / 2)


def test_remote_bytes_and_clear(world: World) -> None:
    stats = iostats.Statistics(world.clock, world.root)
    world.proc(7, 0, 0)
    stats.sample("j", [7], decay=10000)
    world.now += 2.0
    world.proc(7, 0, 4096)
    assert stats.sample("j", [7], decay=10000, remote_bytes=2048) == iostats.Reading(2.0, 1.0)
    stats.clear("j")
    assert stats.reading("j") == iostats.Reading(0.0, 0.0)
    world.now += 1.0
    assert stats.sample("j", [7], decay=10000) == iostats.Reading(0.0, 0.0)  # what came before clear is gone
    stats.forget("j")
    assert stats.reading("j") is None


def test_the_fuse_process_carries_remote_io_at_half_its_traffic(world: World) -> None:
    """Each byte of the working directory passes the FUSE process twice (/dev/fuse and the link)."""
    stats = iostats.Statistics(world.clock, world.root)
    world.proc(7, 0, 0)
    world.proc(30, 100, 100)  # the FUSE process: what it did before the baseline is not counted
    stats.sample("j", [7], decay=10000, link_pids=[30])
    world.now += 1.0
    world.proc(7, 0, 8192)  # 4 KiB into a -X private file, 4 KiB into the working directory
    world.proc(30, 100 + 4096, 100 + 4096)  # read from /dev/fuse, written to the link
    assert stats.sample("j", [7], decay=10000, remote_bytes=1024, link_pids=[30]) == iostats.Reading(8.0, 5.0)
