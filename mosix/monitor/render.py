"""Charts drawn as styled text: vertical bars when every node fits across, else one line per node."""

from __future__ import annotations

import rich.style
import rich.text

from mosix.monitor import colors, views

FILL = ("█", "▒", "░")
MIN_BAR_ROWS = 3
MAX_SPREAD = 8
MAX_BAR = 6


def _style(scheme: colors.Scheme, part: str) -> rich.style.Style:
    colour = scheme.get(part)
    return rich.style.Style(color=colour) if colour else rich.style.Style()


def mark(value: float) -> str:
    """A scale mark: compact, without trailing zeros (2.5, not 2.50)."""
    text = views.compact(value)
    number, suffix = (text[:-1], text[-1]) if text[-1].isalpha() else (text, "")
    return (number.rstrip("0").rstrip(".") if "." in number else number) + suffix


def _column_width(c: views.Column) -> int:
    return max(3, len(str(c.number)), len(c.label)) + 1


def fits_vertically(chart: views.Chart, width: int, height: int) -> bool:
    """Vertical bars need every column across the screen and a few rows of bar."""
    margin = max(len(mark(chart.scale)), len(mark(chart.scale / 2))) + 2
    return (
        not chart.text and margin + sum(_column_width(c) for c in chart.columns) <= width and height - 3 >= MIN_BAR_ROWS
    )


def _cells(chart: views.Chart, c: views.Column, rows: int) -> list[int]:
    """Cumulative heights, in rows, of the column's stacked segments."""
    out, running = [], 0.0
    for s in c.segments:
        running += s.value
        out.append(min(rows, round(running / chart.scale * rows)) if chart.scale else 0)
    if out and out[-1] == 0 and c.total > 0:
        out[-1] = 1  # something is there: show at least one cell
    return out


def legend(chart: views.Chart, scheme: colors.Scheme) -> rich.text.Text:
    """Which fill is which part, in the parts' colours."""
    t = rich.text.Text()
    for i, part in enumerate(chart.parts if len(chart.parts) > 1 else ()):
        t.append(f" {FILL[i % len(FILL)] * 2} {part}", _style(scheme, part))
    if chart.note:
        t.append(f"  ({chart.note})")
    return t


def title(chart: views.Chart, cluster: str, scheme: colors.Scheme) -> rich.text.Text:
    t = rich.text.Text()
    t.append(chart.title, rich.style.Style(bold=True) + _style(scheme, "title"))
    if chart.unit:
        t.append(f" [{chart.unit}]")
    t.append(f"   cluster: {cluster}\n")
    t.append(legend(chart, scheme))
    return t


def vertical(chart: views.Chart, rows: int, width: int, scheme: colors.Scheme) -> rich.text.Text:
    """Bars rising from a 0 axis, the scale on the left, node numbers and values below; spread over the width."""
    top, half = mark(chart.scale), mark(chart.scale / 2)
    margin = max(len(top), len(half))
    axis = _style(scheme, "scale")
    natural = [_column_width(c) for c in chart.columns]
    spare = (width - margin - 2 - sum(natural)) // max(1, len(natural))
    widths = [w + max(0, min(MAX_SPREAD, spare)) for w in natural]
    stacks = [_cells(chart, c, rows) for c in chart.columns]
    t = rich.text.Text()
    for r in range(rows):
        level = rows - r  # 1-based height of this row
        tick = top if r == 0 else half if r == rows // 2 else ""
        t.append(f"{tick:>{margin}} {'┤' if tick else '│'}", axis)
        for c, stack, cw in zip(chart.columns, stacks, widths, strict=True):
            bar = max(2, min(MAX_BAR, cw - 3))
            pad = (cw - bar) // 2
            cell, style = " " * bar, rich.style.Style()
            for i, height in enumerate(stack):
                if level <= height:
                    cell, style = FILL[i % len(FILL)] * bar, _style(scheme, c.segments[i].part)
                    break
            t.append(" " * pad)
            t.append(cell, style)
            t.append(" " * (cw - pad - bar))
        t.append("\n")
    t.append(f"{'0':>{margin}} ┴" + "─" * sum(widths) + "\n", axis)
    t.append(" " * (margin + 2))
    for c, cw in zip(chart.columns, widths, strict=True):
        t.append(f"{c.number:^{cw}}", rich.style.Style(bold=True))
    t.append("\n" + " " * (margin + 2))
    for c, cw in zip(chart.columns, widths, strict=True):
        t.append(f"{c.label:^{cw}}", _style(scheme, "text" if c.alive else "dead"))
    return t


def horizontal(chart: views.Chart, width: int, scheme: colors.Scheme) -> rich.text.Text:
    """One line per node: number, name, a bar from 0 to the scale, the value; text views: the text alone."""
    name_w = max((len(c.name) for c in chart.columns), default=4)
    label_w = max((len(c.label) for c in chart.columns), default=4)
    prefix = 6 + name_w + 2
    length = max(10, width - prefix - label_w - 2)
    t = rich.text.Text()
    if not chart.text:
        t.append(" " * prefix + "0" + mark(chart.scale).rjust(length - 1) + "\n", _style(scheme, "scale"))
    for c in chart.columns:
        t.append(f"{c.number:>5} ", rich.style.Style(bold=True))
        t.append(f"{c.name:<{name_w}} ")
        if chart.text or not c.alive:
            t.append(c.label, _style(scheme, "text" if c.alive else "dead"))
            t.append("\n")
            continue
        t.append("│", _style(scheme, "scale"))
        used = 0
        for i, cells in enumerate(_cells(chart, c, length)):
            t.append(FILL[i % len(FILL)] * (cells - used), _style(scheme, c.segments[i].part))
            used = cells
        t.append(" " * (length - used) + " " + c.label + "\n")
    return t


def draw(chart: views.Chart, cluster: str, width: int, height: int, scheme: colors.Scheme) -> rich.text.Text:
    """The whole view: title and legend lines, then the bars (vertical when they fit) or a message."""
    t = title(chart, cluster, scheme)
    t.no_wrap, t.overflow = True, "ellipsis"
    t.append("\n")
    if not chart.columns:
        t.append("no nodes to show" + (" (all are dead: press d to show them)" if chart.hidden_dead else ""))
        return t
    if fits_vertically(chart, width, height - 2):
        t.append(vertical(chart, height - 5, width, scheme))
    else:
        t.append(horizontal(chart, width, scheme))
    return t
