"""The local cluster's throughput on short jobs, against bare `runc run` of the same container.

Starts a local cluster (`mosix up`) in a temporary state folder, submits N jobs that exit at once
(`testload -n 1`, no queue) through the client, and times until every one has finished; then runs
the same container N times with bare runc (create the overlay bundle once, `runc run` each time,
sequentially, as one node would). Prints jobs per second for both and our overhead per job.

    .venv/bin/python bench/local_cluster.py [--jobs 500] [--nodes 3]     (root: runc and CRIU)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

from mosix.agent import images, jobs, spec
from mosix.api import job
from mosix.client import client, local
from mosix.local import cluster


def ours(state: pathlib.Path, count: int, nodes: int) -> float:
    """Seconds from the first submission until every job finished."""
    layout = cluster.Layout(state)
    try:
        missing = cluster.up(layout, nodes)
        if missing:
            raise SystemExit(f"nodes did not come up: {missing} (see {layout.logs})")
        api = client.Client(local.LocalStore(state))
        started = time.monotonic()
        names = [api.submit(job.MosixJobSpec(command=["testload", "-n", "1", "-d", "0"],
                                             placement=job.Placement.BEST)).name for _ in range(count)]
        pending = set(names)
        while pending:
            time.sleep(0.2)
            finished = {j.name for j in api.jobs() if j.status.phase.finished}
            pending -= finished
        elapsed = time.monotonic() - started
        failed = [j.name for j in api.jobs() if j.status.phase == job.Phase.FAILED]
        if failed:
            print(f"warning: {len(failed)} jobs failed, e.g. {api.get_job(failed[0]).status.message}")
        return elapsed
    finally:
        cluster.down(layout)


def bare_runc(work: pathlib.Path, count: int) -> float:
    """Seconds for `count` sequential `runc run` of the same container (the peer)."""
    image = images.Cache().resolve(job.DEFAULT_IMAGE)
    bundle = work / "bundle"
    rootfs = bundle / "rootfs"
    for d in ("upper", "work"):
        (work / d).mkdir(parents=True)
    rootfs.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={image.rootfs},upperdir={work / 'upper'},workdir={work / 'work'}", str(rootfs)],
                   check=True)
    try:
        record = jobs.Job(name="bench", args=("testload", "-n", "1", "-d", "0"))
        (bundle / "config.json").write_text(json.dumps(spec.config(record, rootfs, "/mosix/bench/bare")))
        root = work / "runc"
        started = time.monotonic()
        for i in range(count):
            subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(bundle), f"bare-{i}"],
                           check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        return time.monotonic() - started
    finally:
        subprocess.run(["umount", str(rootfs)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mosix-bench-") as tmp:
        mine = ours(pathlib.Path(tmp) / "state", args.jobs, args.nodes)
        peer = bare_runc(pathlib.Path(tmp) / "bare", args.jobs)
    print(f"{args.jobs} short jobs (testload -n 1), local cluster of {args.nodes} nodes on one machine")
    print(f"{'':32} {'seconds':>9} {'jobs/s':>8} {'ms/job':>8}")
    print(f"{'mosix (submit to finished)':32} {mine:9.1f} {args.jobs / mine:8.1f} {1000 * mine / args.jobs:8.1f}")
    print(f"{'bare runc run, sequential':32} {peer:9.1f} {args.jobs / peer:8.1f} {1000 * peer / args.jobs:8.1f}")
    print(f"overhead per job beyond bare runc: {1000 * (mine - peer) / args.jobs:.1f} ms "
          f"({mine / peer:.2f}x the bare runtime's time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
