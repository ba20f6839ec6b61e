"""The I/O-aware policy on a running cluster: a job doing heavy I/O away from home is brought home,
unless it was started with -c. Real agents measure the I/O (runc, CRIU, as root)."""

from __future__ import annotations

import os
import shutil

import pytest

from mosix.api import job
from mosix.policy import snapshot
from tests.e2e import harness

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runc and CRIU run the jobs"),
    pytest.mark.skipif(
        shutil.which("runc") is None or shutil.which("criu") is None,
        reason="needs runc and criu (hack/setup.sh installs them)",
    ),
]

# 4 MiB written in 64 KiB chunks, five times a second at most: megabytes per second, far above the
# policy's threshold, while the job's CPU use stays small on a shared machine.
HEAVY_IO = ("sh", "-c", "while :; do testload -f /io --write 64 --iosize 4 -n 0; rm -f /io; sleep 0.2; done")


def test_an_io_heavy_job_away_comes_home_unless_c(cluster: harness.Cluster) -> None:
    """Both jobs have node1 as home (where mosrun ran) and start alone on nodes 2 and 3, so load
    gives no reason to move either: only their I/O does, and -c forbids it for the first."""
    cluster.up(nodes=3)
    stays = cluster.submit("-3", "-c", *HEAVY_IO)
    cluster.wait_for(
        "the -c job's I/O rate to be published",
        lambda: (cluster.status(stays).io_rate_kbps or 0.0) >= snapshot.IO_HOME_KBPS,
    )
    # From here on every control round sees the -c job as I/O-heavy and away from home.
    heavy = cluster.submit("-2", *HEAVY_IO)
    cluster.wait_for(
        "the heavy job to be brought home",
        lambda: cluster.status(heavy).node == "node1" and cluster.status(heavy).phase == job.Phase.RUNNING,
        timeout=120,
    )
    home = cluster.status(heavy)
    assert (home.home_node, home.migrations) == ("node1", 1)
    assert (home.io_rate_kbps or 0.0) >= snapshot.IO_HOME_KBPS
    away = cluster.status(stays)
    assert (away.node, away.home_node, away.migrations, away.phase) == ("node3", "node1", 0, job.Phase.RUNNING)
    cluster.run("moskillall", "-9")
    cluster.wait_for(
        "both jobs to end", lambda: cluster.status(heavy).phase.finished and cluster.status(stays).phase.finished
    )
