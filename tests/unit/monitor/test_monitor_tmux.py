"""mon in a real terminal: tmux runs it against the local store, sends keys and reads the screen back."""

from __future__ import annotations

import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
WAIT_SECONDS = 20.0  # the most a screen may take to appear: a limit, not an assertion on speed

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """One tmux server on a private socket, so that only what this test started is killed."""

    def __init__(self, socket: pathlib.Path) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=False)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "mon").stdout

    def wait_for(self, *texts: str, rows: tuple[list[str], ...] = ()) -> str:
        """The screen once it shows every text and row (a line's words); fails with the last screen if never.

        The terminal is painted in pieces, so a screen is taken again until it is whole."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            screen = self.screen()
            words = [line.split() for line in screen.splitlines()]
            if all(t in screen for t in texts) and all(r in words for r in rows):
                return screen
            assert time.monotonic() < deadline, f"{texts} {rows} never appeared; the screen was:\n{screen}"
            time.sleep(0.1)

    def running(self) -> bool:
        return self.tmux("has-session", "-t", "mon").returncode == 0


@pytest.fixture
def terminal(tmp_path: pathlib.Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path / "tmux.sock")
    try:
        yield term
    finally:
        term.tmux("kill-server")


def test_mon_in_tmux(state: pathlib.Path, terminal: Terminal) -> None:
    env = f"MOSIX_STATE={shlex.quote(str(state))} HOME={shlex.quote(str(state.parent))} TERM=xterm-256color"
    command = f"env {env} {shlex.quote(sys.executable)} -m mosix.monitor.mon --local"
    started = terminal.tmux("new-session", "-d", "-s", "mon", "-x", "120", "-y", "40", "-c", str(REPO), command)
    assert started.returncode == 0, started.stderr

    terminal.wait_for("Load (relative)", "1 dead node(s) hidden", rows=(["1", "2"], ["1.50", "0.25"]))

    terminal.tmux("send-keys", "-t", "mon", "m")
    terminal.wait_for("Memory (used + free)", rows=(["2.0G/8.0G", "6.0G/8.0G"],))
    terminal.tmux("send-keys", "-t", "mon", "m")
    terminal.wait_for("Swap (used + free)", rows=(["3.0G/4.0G", "1.0G/2.0G"],))
    terminal.tmux("send-keys", "-t", "mon", "d")
    terminal.wait_for(rows=(["1", "2", "3"], ["3.0G/4.0G", "1.0G/2.0G", "DEAD"]))
    terminal.tmux("send-keys", "-t", "mon", "D")
    terminal.wait_for("1 dead node(s) hidden", rows=(["1", "2"],))
    terminal.tmux("send-keys", "-t", "mon", "h")
    terminal.wait_for("mon: keys")
    terminal.tmux("send-keys", "-t", "mon", "q")
    deadline = time.monotonic() + WAIT_SECONDS
    while terminal.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not terminal.running(), terminal.screen()
