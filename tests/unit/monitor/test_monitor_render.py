"""Charts as text: vertical bars when the nodes fit across, one line per node otherwise."""

from __future__ import annotations

import datetime

from mosix.monitor import colors, render, views


def chart(key: str, snap: views.Snapshot, *, show_dead: bool = False) -> views.Chart:
    return views.chart(key, snap, show_dead=show_dead)


def test_vertical_bars_with_scale_numbers_and_values(snap: views.Snapshot) -> None:
    text = render.draw(chart("memory", snap), "local", 80, 20, colors.DEFAULTS).plain
    lines = text.splitlines()
    assert lines[0].startswith("Memory (used + free) [GB]") and "cluster: local" in lines[0]
    assert "used" in lines[1] and "free" in lines[1]
    assert lines[2].lstrip().startswith("10 ┤")
    assert "█" in text and "▒" in text
    numbers, values = lines[-2].split(), lines[-1].split()
    assert (numbers, values) == (["1", "2"], ["2.0G/8.0G", "6.0G/8.0G"])
    assert len(lines) == 20


def test_dead_nodes_shown_say_dead(snap: views.Snapshot) -> None:
    text = render.draw(chart("load", snap, show_dead=True), "local", 80, 20, colors.DEFAULTS).plain
    assert text.splitlines()[-1].split() == ["1.50", "0.25", "DEAD"]


def test_too_narrow_for_columns_gives_one_line_per_node(snap: views.Snapshot) -> None:
    text = render.draw(chart("load", snap), "local", 12, 20, colors.DEFAULTS).plain
    rows = [line.split() for line in text.splitlines()[3:]]
    assert [r[:2] for r in rows] == [["1", "mos1"], ["2", "mos2"]]
    assert rows[0][-1] == "1.50" and "█" in rows[0][2]


def test_text_views_are_lists(snap: views.Snapshot) -> None:
    text = render.draw(chart("status", snap, show_dead=True), "local", 80, 20, colors.DEFAULTS).plain
    assert [line.split() for line in text.splitlines()[2:]] == [
        ["1", "mos1", "Running"],
        ["2", "mos2", "Blocked"],
        ["3", "mos3", "DEAD"],
    ]


def test_all_dead_and_hidden_says_how_to_see_them(snap: views.Snapshot) -> None:
    late = views.Snapshot(snap.nodes, snap.now + datetime.timedelta(days=1), snap.dead_after)
    hidden = views.chart("load", late, show_dead=False)
    text = render.draw(hidden, "local", 80, 20, colors.DEFAULTS).plain
    assert "no nodes to show (all are dead: press d to show them)" in text


def test_bars_take_the_scheme_colours(snap: views.Snapshot) -> None:
    scheme = colors.DEFAULTS | {"load": "#00ff00"}
    text = render.draw(chart("load", snap), "local", 80, 20, scheme)
    bar_styles = {str(span.style) for span in text.spans if "█" in text.plain[span.start : span.end]}
    assert bar_styles == {"#00ff00"}


def test_scale_marks_drop_trailing_zeros() -> None:
    assert [render.mark(v) for v in (2.5, 0.5, 5.0, 1000.0, 2500.0)] == ["2.5", "0.5", "5", "1k", "2.5k"]


def test_many_nodes_are_drawn_one_line_each(snap: views.Snapshot) -> None:
    first = snap.nodes[0]
    many = tuple(
        first.model_copy(update={"spec": first.spec.model_copy(update={"number": i})}, deep=True) for i in range(1, 41)
    )
    crowded = views.chart("load", views.Snapshot(many, snap.now, snap.dead_after), show_dead=False)
    lines = render.draw(crowded, "local", 80, 60, colors.DEFAULTS).plain.splitlines()
    assert [line.split()[0] for line in lines[3:]] == [str(i) for i in range(1, 41)]
    assert all(line.endswith(" 1.50") and len(line) <= 80 for line in lines[3:])
