"""The textual App both monitors share: reads a cluster every interval, keeps the view state, draws."""

from __future__ import annotations

import asyncio

import rich.color
import rich.text
import textual.app
import textual.color
import textual.events
import textual.widgets

from mosix.monitor import colors, keys, render, sources, views

REFRESH_SECONDS = 1.5


class MonitorApp(textual.app.App[None]):
    """Thin: the state is which view, which cluster, dead nodes shown or not, help or not; views.py does the rest."""

    CSS = """
    #chart { height: 1fr; padding: 0 1; }
    #footer { dock: bottom; height: auto; padding: 0 1; }
    """
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        keymap: keys.KeyMap,
        clusters: list[sources.Source],
        *,
        start: int = 0,
        scheme: colors.Scheme | None = None,
        problems: list[str] | None = None,
        interval: float = REFRESH_SECONDS,
    ) -> None:
        super().__init__()
        self.keymap = keymap
        self.clusters = clusters
        self.current = start
        self.scheme = scheme or dict(colors.DEFAULTS)
        self.problems = problems or []
        self.interval = interval
        self.view = keymap.first
        self.show_dead = False
        self.help = False
        self.snap: views.Snapshot | None = None
        self.error: str | None = None
        self.reading = False

    def compose(self) -> textual.app.ComposeResult:
        yield textual.widgets.Static(id="chart")
        yield textual.widgets.Static(id="footer")

    async def on_mount(self) -> None:
        if "background" in self.scheme:
            rgb = rich.color.Color.parse(self.scheme["background"]).get_truecolor()
            self.screen.styles.background = textual.color.Color(rgb.red, rgb.green, rgb.blue)
        if "text" in self.scheme:
            rgb = rich.color.Color.parse(self.scheme["text"]).get_truecolor()
            self.screen.styles.color = textual.color.Color(rgb.red, rgb.green, rgb.blue)
        await self.reload()
        self.call_after_refresh(self.draw)  # again, at the size layout gave the chart
        self.set_interval(self.interval, self.reload)

    async def reload(self) -> None:
        """Reads the current cluster off the event loop (Kubernetes may be slow), then draws.

        One read at a time; a read that finishes after a switch to another cluster is dropped for a new one."""
        if self.reading:
            return
        index = self.current
        source = self.clusters[index]
        self.reading = True
        try:
            snap, error = await asyncio.to_thread(lambda: sources.snapshot(source.client())), None
        except Exception as e:  # a monitor outlives a cluster that does not answer: say so and retry
            snap, error = None, f"cannot read {source.label}: {e}"
        finally:
            self.reading = False
        if index != self.current:
            await self.reload()
            return
        self.snap, self.error = snap, error
        self.draw()

    def chart(self) -> views.Chart | None:
        return None if self.snap is None else views.chart(self.view, self.snap, show_dead=self.show_dead)

    def draw(self) -> None:
        body = self.query_one("#chart", textual.widgets.Static)
        size = body.content_size
        label = self.clusters[self.current].label
        chart = self.chart()
        if self.help:
            body.update(rich.text.Text(keys.help_text(self.keymap)))
        elif chart is None:
            body.update(rich.text.Text(self.error or f"reading {label} ..."))
        else:
            body.update(render.draw(chart, label, size.width or 80, size.height or 20, self.scheme))
        self.query_one("#footer", textual.widgets.Static).update(self.footer(chart))

    def footer(self, chart: views.Chart | None) -> rich.text.Text:
        t = rich.text.Text()
        view_keys = " ".join(self.keymap.cycles)
        t.append(f"{view_keys}: views   d/D: show/hide dead   h: help   q: quit", "bold")
        if self.keymap.clusters and len(self.clusters) > 1:
            t.append(f"   </>: cluster {self.current + 1}/{len(self.clusters)}", "bold")
        if chart is not None and chart.hidden_dead:
            t.append(f"\n{chart.hidden_dead} dead node(s) hidden (d shows them)", self.scheme.get("dead", ""))
        if self.snap is not None:
            t.append(f"\nat {self.snap.now.astimezone().strftime('%H:%M:%S')}")
        for problem in self.problems:
            t.append(f"\n{problem}", "yellow")
        return t

    async def on_key(self, event: textual.events.Key) -> None:
        pressed = event.character or ""
        if event.key == "escape":
            self.help = False
        elif pressed in ("q", "Q"):
            self.exit()
            return
        elif pressed == "h":
            self.help = not self.help
        elif pressed == "d":
            self.show_dead, self.help = True, False
        elif pressed == "D":
            self.show_dead, self.help = False, False
        elif pressed in ("<", ">") and self.keymap.clusters:
            step = 1 if pressed == ">" else -1
            self.current = (self.current + step) % len(self.clusters)
            self.snap, self.error, self.help = None, None, False
            self.draw()
            await self.reload()
            return
        elif pressed in self.keymap.cycles:
            self.view = views.next_view(self.keymap.cycles, pressed, self.view)
            self.help = False
        else:
            return
        event.stop()
        self.draw()

    def on_resize(self, event: textual.events.Resize) -> None:
        self.call_after_refresh(self.draw)
