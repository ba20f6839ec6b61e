"""A process that stops on SIGTERM stops however many arrive, whatever its main thread is doing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

SCRIPT = """
import threading
from mosix import stopping
stop = threading.Event()
stopping.stop_on_signals(stop)
print("ready", flush=True)
while not stop.is_set():  # busy, as an agent's reconcile pass is: handlers run between its bytecodes
    stop.is_set() or sum(range(200))
print("stopped", flush=True)
"""


def test_a_storm_of_sigterms_stops_a_busy_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for _ in range(300):
            os.kill(proc.pid, signal.SIGTERM)
            time.sleep(0.0005)
        out, _ = proc.communicate(timeout=60)  # a deadlocked handler would never let it end
    finally:
        proc.kill()
    assert out == "stopped\n" and proc.returncode in (0, -signal.SIGTERM)  # a late one may end its exit


def test_other_signals_do_not_stop_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, signal.SIGWINCH)  # ignored by default, no handler: nothing happens
        time.sleep(0.5)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, out) == (0, "stopped\n")
