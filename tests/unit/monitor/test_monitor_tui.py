"""The real Apps, driven by textual's pilot over a real local store of three nodes (one dead)."""

from __future__ import annotations

import pathlib

import rich.text
import textual.pilot
import textual.widgets

from mosix.api import meta, node
from mosix.client import local
from mosix.monitor import app, colors, keys, mmon, mon, sources

SIZE = (100, 36)


def shown(monitor: app.MonitorApp, widget: str = "#chart") -> str:
    content = monitor.query_one(widget, textual.widgets.Static).content
    assert isinstance(content, rich.text.Text)
    return content.plain


def bottom_lines(monitor: app.MonitorApp) -> list[list[str]]:
    """The node numbers and the values under the bars."""
    return [line.split() for line in shown(monitor).splitlines()[-2:]]


async def press(pilot: textual.pilot.Pilot[None], key: str) -> None:
    await pilot.press(key)
    await pilot.pause()


def mon_app() -> app.MonitorApp:
    return app.MonitorApp(keys.MON, [sources.from_common(mon.parse(["--local"]))])


async def test_mon_shows_the_live_nodes_and_reacts_to_each_key(state: pathlib.Path) -> None:
    monitor = mon_app()
    async with monitor.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert shown(monitor).startswith("Load (relative)")
        assert bottom_lines(monitor) == [["1", "2"], ["1.50", "0.25"]]
        assert "1 dead node(s) hidden" in shown(monitor, "#footer")

        titles = []
        for key in "mmmfulm":
            await press(pilot, key)
            titles.append(shown(monitor).split(" [")[0].split("   ")[0])
        assert titles == [
            "Memory (used + free)",
            "Swap (used + free)",
            "Memory (used + free)",
            "Frozen processes",
            "Utilization",
            "Load (relative)",
            "Memory (used + free)",
        ]

        await press(pilot, "d")
        assert bottom_lines(monitor) == [["1", "2", "3"], ["2.0G/8.0G", "6.0G/8.0G", "DEAD"]]
        assert "hidden" not in shown(monitor, "#footer")
        await press(pilot, "D")
        assert bottom_lines(monitor)[0] == ["1", "2"]

        await press(pilot, "h")
        assert shown(monitor).startswith("mon: keys")
        assert "  m   memory (used + free); pressed again: swap" in shown(monitor)
        await press(pilot, "h")
        assert shown(monitor).startswith("Memory")
        await press(pilot, "h")
        await press(pilot, "escape")
        assert shown(monitor).startswith("Memory")

        await press(pilot, "g")  # mmon's key: nothing happens in mon
        assert shown(monitor).startswith("Memory")
        await press(pilot, "q")
    assert monitor.return_code == 0


async def test_mon_follows_the_store(state: pathlib.Path) -> None:
    monitor = mon_app()
    async with monitor.run_test(size=SIZE) as pilot:
        await pilot.pause()
        local.LocalStore(state).patch(node.MosixNode, "mos2", {"status": {"load": 0.75}}, status=True)
        await monitor.reload()
        assert bottom_lines(monitor)[1] == ["1.50", "0.75"]


async def test_mon_says_when_the_cluster_cannot_be_read(tmp_path: pathlib.Path) -> None:
    missing = sources.parse_one(f"local:{tmp_path / 'none'}", mon.parse([]))
    monitor = app.MonitorApp(keys.MON, [missing])
    async with monitor.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert shown(monitor).startswith(f"cannot read local:{tmp_path / 'none'}: no local cluster at")
        await press(pilot, "m")
        assert shown(monitor).startswith("cannot read")


async def test_mmon_cycles_every_view(state: pathlib.Path) -> None:
    found, start = mmon.clusters(mmon.parse(["--local"]))
    monitor = app.MonitorApp(keys.MMON, found, start=start)
    async with monitor.run_test(size=SIZE) as pilot:
        await pilot.pause()
        seen = []
        for key in "lllmmmgiiiooossss":
            await press(pilot, key)
            seen.append(shown(monitor).split(" [")[0].split("   ")[0])
        assert seen == [
            "Load + frozen processes",
            "Frozen processes",
            "Load (relative)",
            "Memory (used + free)",
            "Swap (used + free)",
            "Disk (used + free)",
            "Grid: local + guest processes",
            "Read I/O rate",
            "Write I/O rate",
            "Total I/O (read + write)",
            "Network in",
            "Network out",
            "Network total (in + out)",
            "CPU speed",
            "Status",
            "MOSIX version",
            "Uptime",
        ]
        assert bottom_lines(monitor) == [["1", "2"], ["3d04h", "5h00m"]]
        await press(pilot, "s")
        await press(pilot, "s")
        await press(pilot, "d")
        assert shown(monitor).splitlines()[2:] == ["    1 mos1 Running", "    2 mos2 Blocked", "    3 mos3 DEAD"]
        await press(pilot, "m")
        await press(pilot, "m")
        await press(pilot, "m")
        assert bottom_lines(monitor)[1] == ["n/a", "n/a", "DEAD"]
        await press(pilot, "h")
        assert all(f"  {key}   " in shown(monitor) for key in "lmgiosdDhq<>")


async def test_mmon_switches_clusters_with_lt_and_gt(state: pathlib.Path, tmp_path: pathlib.Path) -> None:
    other = local.LocalStore(tmp_path / "bmos")
    other.init()
    body = node.MosixNode(
        metadata=meta.ObjectMeta(name="bmos-07"), spec=node.MosixNodeSpec(number=7, address="10.1.0.7")
    )
    other.create(node.MosixNode, body.wire())
    other.patch(
        node.MosixNode,
        "bmos-07",
        {"status": {"state": "Running Normally", "heartbeat": meta.now_rfc3339()}},
        status=True,
    )
    found, start = mmon.clusters(mmon.parse(["-c", f"local,local:{tmp_path / 'bmos'}", "-h", "bmos-07"]))
    monitor = app.MonitorApp(keys.MMON, found, start=start)
    async with monitor.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert f"cluster: local:{tmp_path / 'bmos'}" in shown(monitor).splitlines()[0]
        assert bottom_lines(monitor) == [["7"], ["0"]]
        assert "</>: cluster 2/2" in shown(monitor, "#footer")
        await press(pilot, ">")
        assert "cluster: local" in shown(monitor).splitlines()[0]
        assert bottom_lines(monitor)[0] == ["1", "2"]
        await press(pilot, "<")
        assert bottom_lines(monitor)[0] == ["7"]


async def test_mmon_colours_from_the_config_and_bad_lines_in_the_footer(state: pathlib.Path) -> None:
    home = pathlib.Path.home()
    home.mkdir()
    (home / ".mmon.cfg").write_text("load = #00ff00\nbackground = black\nload = nocolour\n")
    scheme, problems = colors.load()
    monitor = app.MonitorApp(keys.MMON, [sources.parse_one("local", mon.parse([]))], scheme=scheme, problems=problems)
    async with monitor.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "line 3: 'nocolour' is not a colour" in shown(monitor, "#footer")
        chart = monitor.query_one("#chart", textual.widgets.Static).content
        assert isinstance(chart, rich.text.Text)
        assert {str(s.style) for s in chart.spans if "█" in chart.plain[s.start : s.end]} == {"#00ff00"}
        assert monitor.screen.styles.background.hex == "#000000"
