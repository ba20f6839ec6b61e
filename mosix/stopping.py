"""Stopping a long-running process on SIGTERM/SIGINT without a deadlock.

A Python signal handler runs in the main thread between two bytecodes, so a handler that calls
`threading.Event.set` can interrupt another `Event.set` of the same event while it holds the
event's lock, and wait for that lock forever: a second SIGTERM (the keeper passes one on while
`mosix down` sends its own) hung agents that way. Here the handlers do nothing in Python; the
interpreter writes each signal's number to a wakeup pipe (async-signal-safe, in C), and a thread
reading that pipe sets the event.
"""

from __future__ import annotations

import os
import signal
import threading

STOPPING = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: threading.Event, signums: tuple[signal.Signals, ...] = STOPPING) -> None:
    """Set `stop` once any of `signums` arrives. Call from the main thread, once per process."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the interpreter never blocks writing a wakeup byte
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in signums:
        signal.signal(signum, lambda *_: None)
    wanted = {int(s) for s in signums}

    def watch() -> None:
        while not wanted.intersection(os.read(read_end, 64)):
            pass
        stop.set()

    threading.Thread(target=watch, name="signals", daemon=True).start()
