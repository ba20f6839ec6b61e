"""Home-node I/O benchmark: the working directory through the FUSE proxy against local disk, and the
rate at which a job's stdout reaches home.

    .venv/bin/python bench/home-io.py              # 256 MiB at 1 MiB, 32 MiB at 4 KiB, 2 rounds
    .venv/bin/python bench/home-io.py --quick      # 64 MiB and 8 MiB, 1 round

Needs root, runc and busybox-static (the stdout part runs a real container). One temp folder under
/var/tmp holds everything. The home agent is a process of its own (this file with `--home`: the
agent API with mutual TLS on 127.0.0.2, a containers.Manager, homefs exports and home output);
this process is the node running the job away from home (127.0.0.3): it mounts the exported
directory with the agent's own FUSE mount (homefs.mounts.Mounter → homefs.fs) and runs the job.

- files: sequential writes (write(2) of the block size, then fsync: the data is on home's disk
  when the clock stops) and sequential reads (cold: the file's page cache dropped with
  posix_fadvise DONTNEED at home and through the mount first, so both sides read the same disk), of
  one file per case, through the FUSE mount and in a local directory on the same disk. Rounds alternate
  the two (and which goes first), so
  a burst of load elsewhere hits both alike; the table shows the median MB/s and the ratio.
- stdout: a container printing N lines (`seq`) runs here; its output is pushed home by the
  agent's homeio.Forwarder over the agent API (as the agent's reconcile loop does, but back to
  back), and the clock stops when home holds every byte. The peer is the same job with its
  output kept locally only (clock stops when the job has exited and its output is on local disk).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from aiohttp import web

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench import agentproc
from mosix.agent import containers, homeio, images, jobs, server, tls
from mosix.agent.homefs import exports, mounts
from tests.ports import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
JOB = "bench-io"
KiB, MiB = 1 << 10, 1 << 20


log = agentproc.log


# --- the home agent (a process of its own) ---------------------------------------------------------


def home_main(port: int, state: pathlib.Path, cache: pathlib.Path, tls_dir: pathlib.Path, export: pathlib.Path) -> int:
    """`--home`: the home node's agent API (homefs exports and home output), says "ready" on stdout."""
    ident = tls.Identity(ca=tls_dir / "ca.crt", cert=tls_dir / "home.crt", key=tls_dir / "home.key")

    async def start(manager: containers.Manager) -> web.AppRunner:
        served = exports.Exports()
        served.export(JOB, export)
        return await server.serve(manager, "127.0.0.2", port, tls.server_context(ident),
                                  home=homeio.HomeOutput(state / "home"), homefs=served)

    return agentproc.serve(
        lambda: containers.Manager(state, images.Cache(cache), node=f"bench-io-{os.getppid()}-home"), start)


# --- file throughput --------------------------------------------------------------------------------


def write_file(path: pathlib.Path, block: int, total: int) -> float:
    """Seconds to write `total` bytes in `block`-sized write(2) calls, then fsync."""
    buf = os.urandom(block)
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total // block):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def drop_cache(path: pathlib.Path) -> None:
    """Forget the file's cached pages (this file only: the machine is shared)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_file(path: pathlib.Path, block: int) -> tuple[float, int]:
    """Seconds to read the file sequentially in `block`-sized read(2) calls, and the bytes read."""
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    got = 0
    try:
        while chunk := os.read(fd, block):
            got += len(chunk)
    finally:
        os.close(fd)
    return time.perf_counter() - started, got


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Rates:
    """MB/s samples per (operation, block, where), and the CPU the home agent and the FUSE process spent
    per MiB through FUSE (CPU time does not wait for a busy machine's other load, wall time does)."""

    samples: dict[tuple[str, int, str], list[float]] = dataclasses.field(default_factory=dict)
    cpu: dict[tuple[str, int, str], list[float]] = dataclasses.field(default_factory=dict)  # (op, block, process)

    def add(self, op: str, block: int, where: str, nbytes: int, seconds: float) -> None:
        self.samples.setdefault((op, block, where), []).append(nbytes / seconds / 1e6)

    def add_cpu(self, op: str, block: int, nbytes: int, spent: dict[str, float]) -> None:
        for process, seconds in spent.items():
            self.cpu.setdefault((op, block, process), []).append(seconds * 1e3 / (nbytes / MiB))

    def median(self, op: str, block: int, where: str) -> float:
        return statistics.median(self.samples[(op, block, where)])

    def median_cpu(self, op: str, block: int, process: str) -> float:
        return statistics.median(self.cpu[(op, block, process)])


class CPU:
    """CPU seconds spent by named processes between `start` and `spent`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def spent(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}


def bench_files(fuse: pathlib.Path, home_dir: pathlib.Path, local: pathlib.Path, sizes: dict[int, int],
                rounds: int, *, cpu: CPU) -> Rates:
    rates = Rates()
    for r in range(rounds):
        for block, total in sizes.items():
            sides = [("fuse", fuse, home_dir), ("local", local, local)]
            for where, directory, real in sides[::-1] if r % 2 else sides:  # either may find memory the other freed
                name = f"f{block}"
                cpu.start()
                seconds = write_file(directory / name, block, total)
                rates.add("write", block, where, total, seconds)
                if where == "fuse":
                    rates.add_cpu("write", block, total, cpu.spent())
                drop_cache(real / name)
                drop_cache(directory / name)  # (through FUSE: what this node's kernel caches of it)
                cpu.start()
                seconds, got = read_file(directory / name, block)
                if got != total:
                    raise RuntimeError(f"read {got} of {total} bytes from {directory / name}")
                rates.add("read", block, where, total, seconds)
                if where == "fuse":
                    rates.add_cpu("read", block, total, cpu.spent())
                log(f"  round {r + 1}: {block // KiB} KiB blocks, {where}: "
                    f"write {rates.samples[('write', block, where)][-1]:.0f} MB/s, "
                    f"read {rates.samples[('read', block, where)][-1]:.0f} MB/s")
                (directory / name).unlink()
    return rates


# --- stdout streaming -------------------------------------------------------------------------------


def bench_stdout(manager: containers.Manager, sink: homeio.Sink, home_file: pathlib.Path,
                 lines: int, to_home: bool) -> tuple[float, int]:
    """Seconds from starting a job printing `lines` lines until its whole output is home (to_home) or
    on local disk, and the bytes it printed."""
    name = f"out-{'home' if to_home else 'local'}-{time.monotonic_ns()}"
    forwarder = homeio.Forwarder()
    started = time.perf_counter()
    manager.run(jobs.Job(name=name, args=("seq", "1", str(lines))))
    try:
        while True:
            exited = manager.status(name).state == jobs.State.EXITED
            if to_home:
                complete = forwarder.push(manager, name, name, sink)
                if exited and complete:
                    break
            elif exited:
                break
            else:
                time.sleep(0.001)
        seconds = time.perf_counter() - started
        size = manager.stdout_path(name).stat().st_size
        if to_home and (home_file.parent / name.replace("/", ".") / "stdout").stat().st_size != size:
            raise RuntimeError("home does not hold the whole output")
        return seconds, size
    finally:
        manager.remove(name)


# --- the run ----------------------------------------------------------------------------------------


def run(sizes: dict[int, int], rounds: int, lines: int) -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mosix-bench-home-io-", dir="/var/tmp"))
    home_proc: subprocess.Popen[str] | None = None
    mounter: mounts.Mounter | None = None
    manager: containers.Manager | None = None
    try:
        ca = tls.make_ca(tmp / "ca")
        home_ident = tls.issue(ca, tmp / "tls-home", "home", ("127.0.0.2",))
        away_ident = tls.issue(ca, tmp / "tls-away", "away", ("127.0.0.3",))
        home_dir, local = tmp / "home-dir", tmp / "local-dir"
        home_dir.mkdir()
        local.mkdir()
        port = free_port("127.0.0.2")
        url = f"https://127.0.0.2:{port}"
        home_proc = agentproc.spawn(
            [sys.executable, __file__, "--home", "--port", str(port), "--state", str(tmp / "home-state"),
             "--cache", str(tmp / "images"), "--tls-dir", str(home_ident.cert.parent), "--export", str(home_dir)],
            "home agent", str(ROOT))
        mounter = mounts.Mounter(url="https://127.0.0.3:1", identity=away_ident)
        job_dir = tmp / "away-job"
        job_dir.mkdir()
        fuse = mounter.source(jobs.Job(name=JOB, args=("x",), workdir=str(home_dir), home_url=url), job_dir)
        assert fuse is not None
        log(f"home directory {home_dir} mounted at {fuse} from {url}")
        fuse_pid = mounter.server_pid(job_dir)
        assert fuse_pid is not None, f"no FUSE process for {fuse}"
        cpu = CPU({"home": home_proc.pid, "fuse": fuse_pid})
        rates = bench_files(fuse, home_dir, local, sizes, rounds, cpu=cpu)
        mounter.release(job_dir)
        mounter = None

        log("stdout streaming")
        manager = containers.Manager(tmp / "away-state", images.Cache(tmp / "images"),
                                     node=f"bench-io-{os.getpid()}-away")
        sink = homeio.remote("127.0.0.2", port, tls.client_context(away_ident))
        home_out = tmp / "home-state" / "home" / "x"
        out: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
        for _ in range(rounds):
            for to_home in (True, False):
                out[to_home].append(bench_stdout(manager, sink, home_out, lines, to_home))
                seconds, size = out[to_home][-1]
                where = "home" if to_home else "local"
                log(f"  {where}: {lines / seconds:,.0f} lines/s, {size / seconds / 1e6:.1f} MB/s")
        report(rates, sizes, out, lines)
    finally:
        if manager is not None:
            manager.close()
        if mounter is not None:
            mounter.close()
        if home_proc is not None:
            agentproc.stop([home_proc])
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)


def report(rates: Rates, sizes: dict[int, int], out: dict[bool, list[tuple[float, int]]], lines: int) -> None:
    print(f"{'operation':10} {'block':>7} {'size':>8} {'FUSE MB/s':>10} {'local MB/s':>11} {'FUSE/local':>11}"
          f" {'CPU ms/MiB: home':>17} {'FUSE':>5}")
    for op in ("write", "read"):
        for block, total in sizes.items():
            mine, peer = rates.median(op, block, "fuse"), rates.median(op, block, "local")
            label = f"{block // KiB} KiB" if block < MiB else f"{block // MiB} MiB"
            print(f"{op:10} {label:>7} {total // MiB:>5} MiB {mine:10.1f} {peer:11.1f} {mine / peer:10.1%}"
                  f" {rates.median_cpu(op, block, 'home'):17.2f} {rates.median_cpu(op, block, 'fuse'):5.2f}")
    for op in ("write", "read"):
        ratio = rates.median(op, MiB, "fuse") / rates.median(op, MiB, "local")
        print(f"target 1 MiB {op} >= 50% of local: {'PASS' if ratio >= 0.5 else 'MISS'} ({ratio:.0%})")
    print()
    print(f"{'stdout of a job (seq 1 ' + str(lines) + ')':40} {'lines/s':>10} {'MB/s':>7}")
    for to_home, label in ((True, "streamed to the home agent"), (False, "kept locally (peer)")):
        seconds = statistics.median(s for s, _ in out[to_home])
        size = out[to_home][0][1]
        print(f"{label:40} {lines / seconds:10,.0f} {size / seconds / 1e6:7.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 MiB and 8 MiB files, 1 round")
    p.add_argument("--rounds", type=int, help="rounds of every case (default 2, --quick 1)")
    p.add_argument("--lines", type=int, default=1_000_000, help="lines the stdout job prints (default 1,000,000)")
    p.add_argument("--home", action="store_true", help=argparse.SUPPRESS)  # internal: be the home agent
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--state", type=pathlib.Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=pathlib.Path, help=argparse.SUPPRESS)
    p.add_argument("--tls-dir", type=pathlib.Path, help=argparse.SUPPRESS)
    p.add_argument("--export", type=pathlib.Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.home:
        return home_main(args.port, args.state, args.cache, args.tls_dir, args.export)
    if os.geteuid() != 0:
        p.error("needs root (FUSE mounts, runc)")
    sizes = {MiB: (64 if args.quick else 256) * MiB, 4 * KiB: (8 if args.quick else 32) * MiB}
    run(sizes, args.rounds or (1 if args.quick else 2), args.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
