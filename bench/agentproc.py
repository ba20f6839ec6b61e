"""An agent as a process of its own, for the benchmarks that need one beside themselves (migration.py,
home-io.py): the child half serves until SIGTERM, the parent half starts it and stops it. A separate
process keeps the agent's threads and event loop off the clock of the process that measures."""

from __future__ import annotations

import asyncio
import collections.abc
import signal
import subprocess
import sys
import time

from aiohttp import web

from mosix.agent import containers

STOP_TIMEOUT = 60.0  # for an agent to kill its jobs and unmount their layers


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def serve(manager: collections.abc.Callable[[], containers.Manager],
          start: collections.abc.Callable[[containers.Manager], collections.abc.Awaitable[web.AppRunner]]) -> int:
    """The child: make the manager, start its API (`start`), say "ready" on stdout, and serve until SIGTERM;
    then stop the API and close the manager (it kills its jobs and unmounts their layers). Ctrl-C is for
    the benchmark, which then stops us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> None:
        m = manager()
        runner = await start(m)
        try:
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("ready", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()
            await asyncio.to_thread(m.close)

    asyncio.run(main())
    return 0


def spawn(cmd: list[str], what: str, cwd: str) -> subprocess.Popen[str]:
    """The parent: start cmd (a `serve` child) and return once it says it is ready."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, cwd=cwd)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        stop([proc])
        raise RuntimeError(f"{what} did not start (exit {proc.poll()})")
    return proc


def stop(procs: collections.abc.Iterable[subprocess.Popen[str]]) -> None:
    """SIGTERM to every agent, then wait for each (killed if it takes longer than STOP_TIMEOUT)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
