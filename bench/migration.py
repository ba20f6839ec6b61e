"""Migration benchmark: freeze time and total time against resident memory, ours against raw runc and podman.

    .venv/bin/python bench/migration.py                 # 64 MiB, 256 MiB, 1 GiB, 3 moves each
    .venv/bin/python bench/migration.py --quick         # 64 and 256 MiB, 2 moves each
    .venv/bin/python bench/migration.py --sizes 64,256,1024 --reps 5 --methods ours_post-copy,raw_runc

Needs root, runc, CRIU, podman and busybox-static (see ../shared/ENVIRONMENT.md). Every method
moves the same job, `testload -m MB -d 0.05` (MB resident, a line every 0.05 s), from the same
test rootfs, and each move is checked: the job prints a new line where it landed. For each size
the methods start their jobs and then take turns, one move each per round (round-robin), so load
from elsewhere on a shared machine hits them alike.

- ours, stop-and-copy: two agents, each a process of its own (this file with `--agent N`: a
  containers.Manager behind server.serve, mutual TLS, on 127.0.0.2 and 127.0.0.3, state dirs
  under one temp folder); the benchmark, as the control plane, asks one agent's API to migrate
  the job to the other (`POST /jobs/NAME/migrate`, which runs `migration.migrate`), back and
  forth. Freeze is the answer's frozen_seconds (Result.frozen_seconds); total is the wall time of
  the request (request to running on the peer).
- ours, post-copy (when mosix.agent.postcopy exists): the same with `"lazy": true`. Freeze ends
  when the peer runs the job; total (the answer's total_seconds) when the last page arrived.
- raw runc: the agent's own config.json and overlay, `runc run -d`; then `runc checkpoint
  --image-path A`, `cp -a A B`, `runc restore -d --image-path B` under a second runc root.
- podman (`--runtime runc`, own storage under the temp folder, the rootfs `podman import`ed):
  `container checkpoint --export F.tar --compress none`, `cp F G`, `container rm`,
  `container restore --import G`.
For raw runc and podman the job is stopped for the whole move, so freeze = total.

Everything (agents, containers, podman storage, mounts, temp dirs) is removed at the end, on
failure or Ctrl-C too. Figures are wall times on whatever the machine is doing: compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections.abc
import contextlib
import dataclasses
import functools
import importlib.util
import itertools
import json
import logging
import os
import pathlib
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench import agentproc
from mosix.agent import containers, images, jobs, overlay, pageserver, server, spec, tls
from tests.ports import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent

FREEZE_TARGET_MS = 200.0
TOTAL_TARGET_RATIO = 1.2
LINE_TIMEOUT = 60.0
PODMAN_IMAGE = "localhost/mosix-bench-testload:local"

OURS = "ours stop-and-copy"
POSTCOPY = "ours post-copy"
RAW = "raw runc"
PODMAN = "podman"
METHODS = (OURS, POSTCOPY, RAW, PODMAN)


@dataclasses.dataclass
class Sample:
    """One move: seconds the job was stopped, seconds until the move was complete, and the parts."""

    freeze: float
    total: float
    parts: dict[str, float] = dataclasses.field(default_factory=dict)


Results = dict[tuple[str, int], list[Sample]]

# SIGINT/SIGTERM set this; the benchmark stops at the next check (between moves, while polling)
# and cleans up. Cancelling the event loop instead would land inside a migration, which treats
# any interruption as a failure to roll back from, not as a reason to stop.
STOP = threading.Event()


class Interrupted(Exception):
    """Asked to stop by a signal."""


def on_signal(signum: int, _frame: object) -> None:
    """First signal: stop at the next check; second: stop now."""
    if STOP.is_set():
        raise KeyboardInterrupt
    STOP.set()
    log(f"signal {signum}: stopping after the current move, then cleaning up")


def check_stop() -> None:
    """Raise Interrupted if a signal asked to stop."""
    if STOP.is_set():
        raise Interrupted("interrupted")


log = agentproc.log


def run(cmd: list[str], **kw: Any) -> str:
    """Run a command; its stdout; RuntimeError with its stderr if it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return str(proc.stdout)


def timed(cmd: list[str], **kw: Any) -> float:
    """Seconds a command took."""
    t = time.monotonic()
    run(cmd, **kw)
    return time.monotonic() - t


def wait_for(predicate: collections.abc.Callable[[], bool], what: str, timeout: float = LINE_TIMEOUT) -> None:
    """Poll until predicate() holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        check_stop()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def line_count(path: pathlib.Path) -> int:
    """Complete lines in a file (0 if missing)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def grew(path: pathlib.Path, lines: int) -> bool:
    """Whether a file has more than `lines` lines."""
    return line_count(path) > lines


def printed_since(path: pathlib.Path, old_path: pathlib.Path, old_inode: int, old_lines: int) -> bool:
    """Whether a log has a line written after the moment old_* describe (a new file counts from 0)."""
    try:
        same = path == old_path and path.stat().st_ino == old_inode
    except FileNotFoundError:
        return False
    return line_count(path) > (old_lines if same else 0)


def testload_args(mb: int) -> tuple[str, ...]:
    """The benchmark's job: mb resident, a line every 0.05 s."""
    return ("testload", "-m", str(mb), "-d", "0.05")


# --- ours ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Agent:
    """One agent, a process of its own (`--agent N`): its API URL, state dir and process."""

    url: str
    state: pathlib.Path
    proc: subprocess.Popen[str]

    def stdout_path(self, name: str) -> pathlib.Path:
        """Where the agent appends a job's stdout (containers.Manager's layout)."""
        return self.state / "jobs" / name / "stdout"


async def start_agents(tmp: pathlib.Path, cache: pathlib.Path,
                       agent_log: bool = False) -> tuple[list[Agent], ssl.SSLContext]:
    """Agents on 127.0.0.2 and 127.0.0.3, certified by one cluster CA, and the client context of
    the control plane (this benchmark) that calls them."""
    ca = tls.make_ca(tmp / "ca")
    control = tls.client_context(tls.issue(ca, tmp / "tls-control", "control-plane"))
    agents: list[Agent] = []
    try:
        for n in (2, 3):
            address = f"127.0.0.{n}"
            tls.issue(ca, tmp / f"tls{n}", f"node{n}", (address,))
            port = free_port(address)
            state = tmp / f"node{n}"
            proc = await asyncio.to_thread(
                agentproc.spawn, [sys.executable, __file__, "--agent", str(n), "--port", str(port), "--state",
                                  str(state), "--cache", str(cache), "--tls-dir", str(tmp / f"tls{n}"),
                                  *(["--agent-log"] if agent_log else [])],
                f"agent {n}", str(ROOT))
            agents.append(Agent(f"https://{address}:{port}", state, proc))
    except BaseException:
        stop_agents(agents)
        raise
    return agents, control


def stop_agents(agents: list[Agent]) -> None:
    """SIGTERM: each agent kills its jobs and unmounts their layers; then it is gone."""
    agentproc.stop(a.proc for a in agents)


async def call(session: aiohttp.ClientSession, ctx: ssl.SSLContext, method: str, url: str,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to an agent's API; its JSON answer, RuntimeError unless 2xx."""
    async with session.request(method, url, json=body, ssl=ctx) as resp:
        answer: dict[str, Any] = await resp.json(content_type=None)
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url}: {resp.status} {answer}")
        return answer


async def bench_ours(agents: list[Agent], ctx: ssl.SSLContext, mb: int,
                     lazy: bool) -> collections.abc.AsyncGenerator[Sample, None]:
    """Run one job, then at each step ask its agent to migrate it to the other one (back and forth)."""
    name = f"bench-{'pc' if lazy else 'sc'}-{mb}"
    src, dst = agents
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await call(session, ctx, "POST", f"{src.url}/jobs", jobs.Job(name=name, args=testload_args(mb)).to_dict())
        try:
            await asyncio.to_thread(wait_for, functools.partial(grew, src.stdout_path(name), 0), "first line")
            while True:
                before = line_count(dst.stdout_path(name))
                started = time.monotonic()
                result = await call(session, ctx, "POST", f"{src.url}/jobs/{name}/migrate",
                                    {"peer": dst.url, "lazy": lazy})
                total = result.get("total_seconds") or time.monotonic() - started
                if result["peer_status"].get("state") != "Running":
                    raise RuntimeError(f"{name} is not running on the peer: {result}")
                await asyncio.to_thread(wait_for, functools.partial(grew, dst.stdout_path(name), before),
                                        f"{name} printing on {dst.url}")
                frozen = float(result["frozen_seconds"])
                log(f"  {'post-copy' if lazy else 'stop-and-copy'} {mb} MiB: frozen {frozen:.3f} s, "
                    f"total {total:.3f} s")
                src, dst = dst, src
                # MB over the API: the set's tar (stop-and-copy's memory goes by the page stream); then the
                # agent's own phase timings (Result.phases), where the time went.
                phases = {k: float(v) for k, v in (result.get("phases") or {}).items()}
                yield Sample(frozen, float(total), {"MB over API": result["bytes_sent"] / 2**20, **phases})
        finally:
            with contextlib.suppress(Exception):
                await call(session, ctx, "POST", f"{src.url}/jobs/{name}/kill")


def agent_main(n: int, port: int, state: pathlib.Path, cache: pathlib.Path, tls_dir: pathlib.Path, *,
               agent_log: bool = False) -> int:
    """`--agent N`: one node agent (container manager + API), as the agent process runs it without a
    control plane; says "ready" on stdout, and on SIGTERM kills its jobs and unmounts their layers.
    agent_log: its log (with each migration's phases) on stderr, in milliseconds."""
    if agent_log:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s.%(msecs)03d node{n} %(message)s",
                            datefmt="%H:%M:%S")
    address = f"127.0.0.{n}"
    ident = tls.Identity(ca=tls_dir / "ca.crt", cert=tls_dir / f"node{n}.crt", key=tls_dir / f"node{n}.key")

    async def start(manager: containers.Manager) -> web.AppRunner:
        if has_postcopy():
            from mosix.agent import postcopy

            postcopy.enable(manager, ident, address)
        return await server.serve(manager, address, port, tls.server_context(ident), tls.client_context(ident))

    return agentproc.serve(
        lambda: containers.Manager(state, images.Cache(cache), node=f"bench-{os.getppid()}-{n}"), start)


# --- raw runc --------------------------------------------------------------------------------------


class LineReader:
    """Drains a container's stdout pipe in a thread, counting lines."""

    def __init__(self, fd: int) -> None:
        self.lines = 0
        self._fd = fd
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with os.fdopen(self._fd, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                self.lines += chunk.count(b"\n")

    def printed(self) -> bool:
        """Whether a line came."""
        return self.lines >= 1

    def join(self, timeout: float = 10) -> None:
        """Wait for EOF (the writer is gone)."""
        self._thread.join(timeout)


def runc_launch(cmd: list[str]) -> tuple[LineReader, float]:
    """Run `runc ... run -d` or `runc ... restore -d` with a fresh stdout/stderr pipe; its reader and seconds."""
    r, w = os.pipe()
    try:
        started = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=w, stderr=w, check=False)
        seconds = time.monotonic() - started
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    reader = LineReader(r)
    if proc.returncode != 0:
        reader.join()
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return reader, seconds


def reap(pid_file: pathlib.Path) -> None:
    """Collect a container init that runc left as our child (we are a subreaper)."""
    with contextlib.suppress(OSError, ValueError):
        os.waitpid(int(pid_file.read_text()), os.WNOHANG)


def bench_raw(tmp: pathlib.Path, rootfs: pathlib.Path, mb: int) -> collections.abc.Generator[Sample, None, None]:
    """runc run, then at each step: checkpoint, copy the image dir, restore under the other runc root."""
    base = tmp / f"raw-{mb}"
    name = f"bench-raw-{mb}"
    roots = [base / "rootA", base / "rootB"]
    job_dir = base / "job"
    target = job_dir / "rootfs"
    overlay.mount(rootfs, job_dir / "upper", job_dir / "work", target)
    bundle = job_dir / "bundle"
    bundle.mkdir(parents=True)
    config = spec.config(jobs.Job(name=name, args=testload_args(mb)), target,
                         spec.cgroup_path(f"bench-{os.getpid()}-raw", name))
    (bundle / "config.json").write_text(json.dumps(config))
    pid_file = base / "pid"
    current = 0
    reader: LineReader | None = None
    try:
        reader, _ = runc_launch(["runc", "--root", str(roots[0]), "run", "-d", "--pid-file", str(pid_file),
                                 "-b", str(bundle), name])
        wait_for(reader.printed, "first line (raw runc)")
        for i in itertools.count():
            here, there = base / f"img{i}-a", base / f"img{i}-b"
            started = time.monotonic()
            t_ckpt = timed(["runc", "--root", str(roots[current]), "checkpoint", "--image-path", str(here),
                            "--work-path", str(base / f"work{i}-a"), name])
            reap(pid_file)
            t_copy = timed(["cp", "-a", str(here), str(there)])
            current = 1 - current
            reader.join()
            reader, t_restore = runc_launch(
                ["runc", "--root", str(roots[current]), "restore", "-d", "--pid-file", str(pid_file),
                 "--image-path", str(there), "--work-path", str(base / f"work{i}-b"), "-b", str(bundle), name])
            total = time.monotonic() - started
            wait_for(reader.printed, "a line after runc restore")
            log(f"  raw runc {mb} MiB: checkpoint {t_ckpt:.3f} + copy {t_copy:.3f} + restore {t_restore:.3f} "
                f"= {total:.3f} s")
            shutil.rmtree(here, ignore_errors=True)
            shutil.rmtree(there, ignore_errors=True)
            yield Sample(total, total, {"checkpoint": t_ckpt, "copy": t_copy, "restore": t_restore})
    finally:
        for root in roots:
            with contextlib.suppress(RuntimeError):
                run(["runc", "--root", str(root), "delete", "--force", name])
        reap(pid_file)
        if reader is not None:
            reader.join(2)
        with contextlib.suppress(Exception):
            overlay.unmount(target)
        cgroup = spec.cgroup_path(f"bench-{os.getpid()}-raw", name).rsplit("/", 1)[0].lstrip("/")
        for hierarchy in pathlib.Path("/sys/fs/cgroup").glob("*"):
            with contextlib.suppress(OSError):
                (hierarchy / cgroup).rmdir()
        shutil.rmtree(base, ignore_errors=True)


# --- podman ----------------------------------------------------------------------------------------


class Podman:
    """podman with runc and its own storage under the temp folder (nothing touches the system's)."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.dir = tmp / "podman"
        self.dir.mkdir()
        self.base = ["podman", "--runtime", "runc", "--root", str(self.dir / "root"),
                     "--runroot", str(self.dir / "run"), "--tmpdir", str(self.dir / "tmp"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        self.env = {**os.environ, "PODMAN_IGNORE_CGROUPSV1_WARNING": "1"}

    def __call__(self, *args: str) -> str:
        return run([*self.base, *args], env=self.env)

    def timed(self, *args: str) -> float:
        t = time.monotonic()
        self(*args)
        return time.monotonic() - t

    def log_path(self, name: str) -> pathlib.Path:
        """The k8s-file log of a container."""
        return pathlib.Path(self("inspect", "--format", "{{.HostConfig.LogConfig.Path}}", name).strip())

    def import_rootfs(self, rootfs: pathlib.Path) -> None:
        """The test rootfs as a local image (a tar, `podman import`; no registry)."""
        tar = self.dir / "rootfs.tar"
        run(["tar", "-C", str(rootfs), "-cf", str(tar), "."])
        self("import", "--change", "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             str(tar), PODMAN_IMAGE)
        tar.unlink()

    def cleanup(self) -> None:
        """Remove every container and image of this storage, unmount what it left, delete it."""
        with contextlib.suppress(RuntimeError):
            self("rm", "--all", "--force", "--time", "0")
        with contextlib.suppress(RuntimeError):
            self("rmi", "--all", "--force")
        with contextlib.suppress(RuntimeError):
            self("system", "reset", "--force")
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith(str(self.dir))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_podman(podman: Podman, mb: int) -> collections.abc.Generator[Sample, None, None]:
    """podman run, then at each step: checkpoint --export, copy, rm, restore --import."""
    name = f"bench-podman-{mb}"
    podman("run", "-d", "--name", name, "--network", "none", "--log-driver", "k8s-file", PODMAN_IMAGE,
           *testload_args(mb))
    try:
        logfile = podman.log_path(name)
        wait_for(lambda: line_count(logfile) >= 1, "first line (podman)")
        for i in itertools.count():
            here, there = podman.dir / f"ckpt{i}-a.tar", podman.dir / f"ckpt{i}-b.tar"
            started = time.monotonic()
            t_ckpt = podman.timed("container", "checkpoint", "--export", str(here), "--compress", "none", name)
            t_copy = timed(["cp", str(here), str(there)])
            old = (logfile, logfile.stat().st_ino, line_count(logfile))
            t_rm = podman.timed("container", "rm", name)
            t_restore = podman.timed("container", "restore", "--import", str(there))
            total = time.monotonic() - started
            logfile = podman.log_path(name)  # a restored container may log to a new file
            wait_for(functools.partial(printed_since, logfile, *old), "a line after podman restore")
            log(f"  podman {mb} MiB: checkpoint {t_ckpt:.3f} + copy {t_copy:.3f} + rm {t_rm:.3f} "
                f"+ restore {t_restore:.3f} = {total:.3f} s")
            here.unlink(missing_ok=True)
            there.unlink(missing_ok=True)
            yield Sample(total, total, {"checkpoint": t_ckpt, "copy": t_copy, "rm": t_rm, "restore": t_restore})
    finally:
        with contextlib.suppress(RuntimeError):
            podman("rm", "--force", "--time", "0", name)


# --- the table -------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def table(results: Results, sizes: list[int], reps: int) -> tuple[str, list[str]]:
    """The table, and the target lines (PASS/MISS)."""
    med: dict[tuple[str, int], float] = {k: statistics.median(s.total for s in v) for k, v in results.items() if v}
    header = (f"{'method':<20} {'MiB':>5} {'freeze ms':>17} {'total ms':>17} {'x raw runc':>11} "
              f"{'ours s&c / podman':>18}  parts (median s)")
    lines = [header, "-" * len(header)]
    for mb in sizes:
        for method in METHODS:
            samples = results.get((method, mb))
            if not samples:
                continue
            fr = [s.freeze for s in samples]
            to = [s.total for s in samples]
            freeze = f"{ms(statistics.median(fr))} ({ms(min(fr))})"
            total = f"{ms(statistics.median(to))} ({ms(min(to))})"
            raw = med.get((RAW, mb))
            ratio = f"{med[(method, mb)] / raw:.2f}" if raw else "-"
            pod = med.get((PODMAN, mb))
            vs_podman = f"{med[(method, mb)] / pod:.2f}" if method == OURS and pod else ""
            parts = ", ".join(f"{k} {statistics.median(s.parts[k] for s in samples):.2f}"
                              for k in samples[0].parts if all(k in s.parts for s in samples))
            lines.append(f"{method:<20} {mb:>5} {freeze:>17} {total:>17} {ratio:>11} {vs_podman:>18}  {parts}")
        lines.append("")
    lines.append(f"freeze and total: median (min) of {reps} moves; x raw runc: median total over raw runc's "
                 "median total, same size")

    targets: list[str] = []
    ratios = {mb: med[(OURS, mb)] / med[(RAW, mb)] for mb in sizes if (OURS, mb) in med and (RAW, mb) in med}
    if ratios:
        worst = max(ratios.values())
        verdict = "PASS" if worst <= TOTAL_TARGET_RATIO else "MISS"
        each = ", ".join(f"{mb} MiB {r:.2f}x" for mb, r in ratios.items())
        targets.append(f"target: stop-and-copy total within {TOTAL_TARGET_RATIO}x raw runc: {verdict} ({each})")
    else:
        targets.append(f"target: stop-and-copy total within {TOTAL_TARGET_RATIO}x raw runc: not measured")
    pc = results.get((POSTCOPY, 1024))
    if pc:
        f = statistics.median(s.freeze for s in pc) * 1000
        verdict = "PASS" if f < FREEZE_TARGET_MS else "MISS"
        targets.append(f"target: post-copy freeze under {FREEZE_TARGET_MS:.0f} ms at 1 GiB: {verdict} "
                       f"(median {f:.0f} ms)")
    else:
        why = "post-copy not in this run" if 1024 in sizes else "1 GiB not in this run"
        targets.append(f"target: post-copy freeze under {FREEZE_TARGET_MS:.0f} ms at 1 GiB: not measured ({why})")
    return "\n".join(lines), targets


def has_postcopy() -> bool:
    """Whether this tree has post-copy migration (mosix.agent.postcopy)."""
    return importlib.util.find_spec("mosix.agent.postcopy") is not None


# --- driving -------------------------------------------------------------------------------------


Mover = tuple[collections.abc.Callable[[], collections.abc.Awaitable[Sample]],
              collections.abc.Callable[[], collections.abc.Awaitable[None]]]


def async_mover(gen: collections.abc.AsyncGenerator[Sample, None]) -> Mover:
    """(next move, close) of a method written as an async generator of moves."""
    return (lambda: anext(gen)), gen.aclose


def sync_mover(gen: collections.abc.Generator[Sample, None, None]) -> Mover:
    """(next move, close) of a method written as a (blocking) generator of moves, run in a thread."""

    async def step() -> Sample:
        return await asyncio.to_thread(next, gen)

    async def close() -> None:
        await asyncio.to_thread(gen.close)

    return step, close


# --- main ------------------------------------------------------------------------------------------


def check_requirements() -> None:
    """Root and the binaries, or exit saying what is missing."""
    missing = [] if os.geteuid() == 0 else ["root"]
    missing += [b for b in ("runc", "criu", "podman", "umoci", "iptables-restore") if shutil.which(b) is None]
    if not pathlib.Path("/bin/busybox").exists():
        missing.append("/bin/busybox")
    if missing:
        raise SystemExit(f"bench/migration.py needs {', '.join(missing)}")


async def main_async(sizes: list[int], reps: int, methods: set[str], agent_log: bool = False) -> Results:
    """Run every method for every size in one temp folder; clean everything up."""
    results: Results = {}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mosix-bench-migration-", dir="/var/tmp"))
    agents: list[Agent] = []
    podman: Podman | None = None
    try:
        cache = images.Cache(tmp / "images")
        log("building the test image")
        rootfs = (await asyncio.to_thread(cache.resolve, "mosix/testload:local")).rootfs
        agents, control = await start_agents(tmp, cache.root, agent_log)
        if PODMAN in methods:
            podman = Podman(tmp)
            await asyncio.to_thread(podman.import_rootfs, rootfs)
        for mb in sizes:
            check_stop()
            log(f"{mb} MiB")
            movers: dict[str, Mover] = {}
            if OURS in methods:
                movers[OURS] = async_mover(bench_ours(agents, control, mb, lazy=False))
            if POSTCOPY in methods and has_postcopy():
                movers[POSTCOPY] = async_mover(bench_ours(agents, control, mb, lazy=True))
            if RAW in methods:
                movers[RAW] = sync_mover(bench_raw(tmp, rootfs, mb))
            if PODMAN in methods and podman is not None:
                movers[PODMAN] = sync_mover(bench_podman(podman, mb))
            try:
                for _ in range(reps):  # round-robin: a burst of load elsewhere hits every method alike
                    for method, (step, _close) in movers.items():
                        check_stop()
                        results.setdefault((method, mb), []).append(await step())
            finally:
                for _step, close in movers.values():
                    with contextlib.suppress(Exception):
                        await close()
    finally:
        log("cleaning up")
        await asyncio.to_thread(stop_agents, agents)
        if podman is not None:
            podman.cleanup()
        with open("/proc/self/mountinfo") as f:
            left = [line.split()[4] for line in f if line.split()[4].startswith(str(tmp))]
        for m in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 and 256 MiB, 2 moves each (well under a minute)")
    p.add_argument("--sizes", help="comma-separated resident sizes in MiB (default 64,256,1024)")
    p.add_argument("--reps", type=int, help="moves per method and size (default 3, --quick 2)")
    p.add_argument("--agent", type=int, help=argparse.SUPPRESS)  # internal: run agent 127.0.0.N
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--state", type=pathlib.Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=pathlib.Path, help=argparse.SUPPRESS)
    p.add_argument("--tls-dir", type=pathlib.Path, help=argparse.SUPPRESS)
    p.add_argument("--agent-log", action="store_true",
                   help="the agents' logs on stderr (each migration's phases, on both sides), in ms")
    p.add_argument("--methods", default="all",
                   help=f"comma-separated subset of: {', '.join(m.replace(' ', '_') for m in METHODS)} (default all)")
    args = p.parse_args(argv)
    if args.agent is not None:
        return agent_main(args.agent, args.port, args.state, args.cache, args.tls_dir, agent_log=args.agent_log)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([64, 256] if args.quick else [64, 256, 1024])
    reps = args.reps or (2 if args.quick else 3)
    methods = set(METHODS) if args.methods == "all" else {m.replace("_", " ") for m in args.methods.split(",")}
    unknown = methods - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}")
    check_requirements()
    pageserver.raise_pipe_max_size()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    try:
        results = asyncio.run(main_async(sizes, reps, methods, args.agent_log))
    except Interrupted:
        log("interrupted; everything was cleaned up")
        return 130
    text, targets = table(results, sizes, reps)
    print(f"migration of a `testload -m MiB -d 0.05` job, {reps} moves per row, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs")
    print(text)
    for t in targets:
        print(t)
    print(f"(whole run {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
