"""Stdin benchmark: how fast `mosrun -i` input reaches a job, against a plain pipe into a plain process.

    .venv/bin/python bench/stdin.py                 # 64 MiB, 3 runs
    .venv/bin/python bench/stdin.py --mib 16 --reps 2

Needs root, runc and busybox-static. Ours: a containers.Manager runs `wc -c` in a job container with
stdin, its feeder reading the input from a source in memory (as it reads the home's input file), 1 MiB
at a time. The time of a run with no input (container start and exit) is measured in the same run and
taken off, so the rate is the feeding alone. Peer: `busybox wc -c` on the host, fed through a pipe by
this process. Figures are wall times on whatever the machine is doing: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from mosix.agent import containers, images, jobs

CHUNK = 1 << 20


def ours(manager: containers.Manager, name: str, data: bytes) -> float:
    """Seconds from start to exit of a job counting `data` on its stdin (checked)."""
    manager.input_source = lambda _job, offset: (data[offset : offset + CHUNK], offset + CHUNK >= len(data))
    started = time.perf_counter()
    manager.run(jobs.Job(name=name, args=("sh", "-c", "wc -c"), stdin=True))
    code = manager.wait(name, timeout=600)
    seconds = time.perf_counter() - started
    counted = manager.stdout_path(name).read_text().strip()
    manager.remove(name)
    if code != 0 or counted != str(len(data)):
        raise SystemExit(f"job {name}: exit {code}, counted {counted!r} of {len(data)} bytes")
    return seconds


def plain_pipe(data: bytes) -> float:
    started = time.perf_counter()
    done = subprocess.run(["busybox", "wc", "-c"], input=data, capture_output=True, check=True)
    seconds = time.perf_counter() - started
    if done.stdout.decode().strip() != str(len(data)):
        raise SystemExit(f"wc counted {done.stdout!r}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64, help="input size in MiB (default 64)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/stdin.py needs root (runc)", file=sys.stderr)
        return 2
    data = os.urandom(args.mib << 20)
    with tempfile.TemporaryDirectory(prefix="mosix-bench-stdin-") as tmp:
        manager = containers.Manager(
            pathlib.Path(tmp) / "agent", images.Cache(pathlib.Path(tmp) / "images"), node=f"bench-stdin-{os.getpid()}"
        )
        try:
            ours(manager, "warm", b"x")  # builds the image once
            empty, fed, pipe = [], [], []
            for rep in range(args.reps):
                empty.append(ours(manager, f"empty{rep}", b""))
                fed.append(ours(manager, f"fed{rep}", data))
                pipe.append(plain_pipe(data))
        finally:
            manager.close()
    start = statistics.median(empty)
    ours_rate = args.mib / max(statistics.median(fed) - start, 1e-9)
    pipe_rate = args.mib / statistics.median(pipe)
    print(f"input {args.mib} MiB, {args.reps} runs each, medians")
    print(
        f"  ours (agent feeder into a job container): {ours_rate:8.1f} MiB/s  (job start+exit {start:.3f} s taken off)"
    )
    print(f"  plain pipe into a host process:          {pipe_rate:8.1f} MiB/s")
    print(f"  ratio ours / plain pipe:                  {ours_rate / pipe_rate:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
