"""The I/O-aware policy on a running cluster: a job doing heavy I/O away from home is brought home,
unless it was started with -c. Real agents measure the I/O (runc, CRIU, as root)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mosix.api import cluster as mcluster
from mosix.api import job, meta
from mosix.client import store
from mosix.policy import snapshot
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS

# 4 MiB written in 64 KiB chunks, five times a second at most: megabytes per second, far above the
# policy's threshold, while the job's CPU use stays small on a shared machine.
HEAVY_IO = ("sh", "-c", "while :; do testload -f /io --write 64 --iosize 4 -n 0; rm -f /io; sleep 0.2; done")


NO_MOVE_IS_WORTH_IT = 100.0  # the largest minGain the schema allows (a 100-fold speed-up)


@contextlib.contextmanager
def no_load_balancing(c: harness.Cluster) -> Iterator[None]:
    """The balancer's minimum gain set out of reach, put back afterwards: on a shared, noisy machine a
    node's measured load can make a load move look worth it, and the scenario is about I/O alone
    (bringing a job home for its I/O does not depend on that knob)."""
    api = c.api()
    try:
        old = mcluster.MosixCluster.model_validate(api.store.get(mcluster.MosixCluster, mcluster.DEFAULT_NAME))
    except store.NotFound:
        old = None
    if old is None:
        made = mcluster.MosixCluster(metadata=meta.ObjectMeta(name=mcluster.DEFAULT_NAME))
        made.spec.balancing.min_gain = NO_MOVE_IS_WORTH_IT
        api.store.create(mcluster.MosixCluster, made.wire())
    else:
        api.store.patch(mcluster.MosixCluster, mcluster.DEFAULT_NAME,
                        {"spec": {"balancing": {"minGain": NO_MOVE_IS_WORTH_IT}}})
    try:
        yield
    finally:
        if old is None:
            api.store.delete(mcluster.MosixCluster, mcluster.DEFAULT_NAME)
        else:
            gain = old.spec.balancing.min_gain
            api.store.patch(mcluster.MosixCluster, mcluster.DEFAULT_NAME, {"spec": {"balancing": {"minGain": gain}}})


def test_an_io_heavy_job_away_comes_home_unless_c(cluster: harness.Cluster) -> None:
    """Both jobs have node1 as home (where mosrun ran) and start alone on nodes 2 and 3; load
    balancing is off, so only their I/O can move them, and -c forbids it for the first."""
    with no_load_balancing(cluster):
        _scenario(cluster)


def _scenario(cluster: harness.Cluster) -> None:
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
