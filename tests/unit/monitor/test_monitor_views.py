"""The views as pure functions: three nodes (one dead) and a time in, bars and labels out."""

from __future__ import annotations

import datetime

import pytest

from mosix.api import node
from mosix.monitor import keys, views


def values(chart: views.Chart) -> dict[int, tuple[tuple[str, float], ...]]:
    return {c.number: tuple((s.part, s.value) for s in c.segments) for c in chart.columns}


def labels(chart: views.Chart) -> dict[int, str]:
    return {c.number: c.label for c in chart.columns}


def test_dead_nodes_are_hidden_and_counted_until_shown(snap: views.Snapshot) -> None:
    hidden = views.chart("load", snap, show_dead=False)
    assert [c.number for c in hidden.columns] == [1, 2]
    assert hidden.hidden_dead == 1
    shown = views.chart("load", snap, show_dead=True)
    assert labels(shown) == {1: "1.50", 2: "0.25", 3: "DEAD"}
    assert shown.hidden_dead == 0
    assert not shown.columns[2].alive and shown.columns[2].segments == ()


def test_a_node_that_never_reported_is_dead(now: datetime.datetime) -> None:
    silent = node.MosixNode.model_validate({"metadata": {"name": "x"}, "spec": {"number": 9, "address": "10.0.0.9"}})
    chart = views.chart("load", views.Snapshot((silent,), now), show_dead=True)
    assert labels(chart) == {9: "DEAD"}


def test_the_dead_after_setting_decides(snap: views.Snapshot) -> None:
    longer = views.Snapshot(snap.nodes, snap.now, dead_after=7200)
    chart = views.chart("load", longer, show_dead=False)
    assert [c.number for c in chart.columns] == [1, 2, 3]


def test_load_scale_is_a_round_number_above_the_highest_bar(snap: views.Snapshot) -> None:
    chart = views.chart("load", snap, show_dead=False)
    assert values(chart) == {1: (("load", 1.5),), 2: (("load", 0.25),)}
    assert chart.scale == 2.0
    assert chart.title.startswith("Load")


def test_memory_and_swap_are_used_plus_free_in_gb(snap: views.Snapshot) -> None:
    memory = views.chart("memory", snap, show_dead=False)
    assert values(memory) == {1: (("used", 6.0), ("free", 2.0)), 2: (("used", 2.0), ("free", 6.0))}
    assert labels(memory) == {1: "2.0G/8.0G", 2: "6.0G/8.0G"}
    assert memory.scale == 10.0
    swap = views.chart("swap", snap, show_dead=False)
    assert values(swap) == {1: (("used", 1.0), ("free", 3.0)), 2: (("used", 1.0), ("free", 1.0))}
    assert swap.title.startswith("Swap")


def test_disk_says_na_when_nodes_report_none(snap: views.Snapshot) -> None:
    disk = views.chart("disk", snap, show_dead=False)
    assert labels(disk) == {1: "n/a", 2: "n/a"}
    assert values(disk) == {1: (), 2: ()}


def test_util_frozen_and_load_plus_frozen(snap: views.Snapshot) -> None:
    util = views.chart("util", snap, show_dead=False)
    assert (labels(util), util.scale) == ({1: "90%", 2: "40%"}, 100.0)
    assert labels(views.chart("frozen", snap, show_dead=False)) == {1: "2", 2: "0"}
    both = views.chart("load+frozen", snap, show_dead=False)
    assert values(both)[1] == (("load", 1.5), ("frozen", 2.0))
    assert both.scale == 5.0


def test_grid_shows_local_and_guest_processes_and_the_guest_limit(snap: views.Snapshot) -> None:
    grid = views.chart("grid", snap, show_dead=False)
    assert values(grid) == {1: (("local", 2.0), ("guest", 1.0)), 2: (("local", 0.0), ("guest", 3.0))}
    assert labels(grid) == {1: "2+1/10", 2: "0+3/4"}


def test_io_and_network_rates_and_totals(snap: views.Snapshot) -> None:
    assert labels(views.chart("read", snap, show_dead=False)) == {1: "120", 2: "10"}
    assert labels(views.chart("write", snap, show_dead=False)) == {1: "30", 2: "5"}
    io = views.chart("io", snap, show_dead=False)
    assert values(io)[1] == (("read", 120.0), ("write", 30.0))
    assert labels(io) == {1: "150", 2: "15"}
    assert labels(views.chart("net-in", snap, show_dead=False)) == {1: "800", 2: "50"}
    assert labels(views.chart("net-out", snap, show_dead=False)) == {1: "200", 2: "60"}
    assert labels(views.chart("net", snap, show_dead=False)) == {1: "1.0k", 2: "110"}


def test_speed_status_version_uptime(snap: views.Snapshot) -> None:
    assert labels(views.chart("speed", snap, show_dead=False)) == {1: "10kx4", 2: "8.0kx2"}
    status = views.chart("status", snap, show_dead=True)
    assert status.text and labels(status) == {1: "Running", 2: "Blocked", 3: "DEAD"}
    assert labels(views.chart("version", snap, show_dead=False)) == {1: "0.1.0", 2: "0.1.0"}
    uptime = views.chart("uptime", snap, show_dead=False)
    assert labels(uptime) == {1: "3d04h", 2: "5h00m"}
    assert round(uptime.columns[0].total) == 76


@pytest.mark.parametrize(
    ("top", "scale"), [(0.0, 1.0), (0.3, 1.0), (1.5, 2.0), (3.0, 5.0), (7.0, 10.0), (10.0, 10.0), (1100.0, 2000.0)]
)
def test_nice_scale(top: float, scale: float) -> None:
    assert views.nice_scale(top) == scale


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (0.25, "0.25"), (12.5, "12.5"), (830, "830"), (4100, "4.1k"), (12e6, "12M")]
)
def test_compact(value: float, text: str) -> None:
    assert views.compact(value) == text


def test_consecutive_presses_cycle_and_another_key_starts_its_own_cycle() -> None:
    cycles = keys.MON.cycles
    assert views.next_view(cycles, "m", "load") == "memory"
    assert views.next_view(cycles, "m", "memory") == "swap"
    assert views.next_view(cycles, "m", "swap") == "memory"
    assert views.next_view(cycles, "l", "swap") == "load"
    mmon = keys.MMON.cycles
    seen, view = [], "util"
    for _ in range(4):
        view = views.next_view(mmon, "s", view)
        seen.append(view)
    assert seen == ["speed", "status", "version", "uptime"]
    assert views.next_view(mmon, "s", "uptime") == "speed"


@pytest.mark.parametrize("keymap", [keys.MON, keys.MMON], ids=lambda k: k.name)
def test_every_key_has_its_views_and_a_help_line(keymap: keys.KeyMap) -> None:
    for cycle in keymap.cycles.values():
        assert all(view in views.VIEWS for view in cycle)
    helped = [key for key, _ in keymap.help]
    assert set(keymap.cycles) | {"d", "D", "h", "q"} <= set(helped)
    assert ("<" in helped) == keymap.clusters == (">" in helped)
    text = keys.help_text(keymap)
    assert all(f"  {key}   " in text for key in helped)


def test_mmon_has_everything_of_mon() -> None:
    for key, cycle in keys.MON.cycles.items():
        assert set(cycle) <= set(keys.MMON.cycles[key])
