"""The I/O-aware policy on a running cluster: a job doing heavy I/O in its working directory away from
home (through the FUSE mount, to home) is brought home, unless it was started with -c; one as busy
with its -X private files, local wherever it runs, stays. Real agents measure the I/O (runc, CRIU,
FUSE, as root)."""

from __future__ import annotations

from mosix.api import job
from mosix.policy import snapshot
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS


def heavy_io(path: str) -> tuple[str, ...]:
    """4 MiB written to `path` in 64 KiB chunks, five times a second at most: megabytes per second, far
    above the policy's threshold, while the job's CPU use stays small on a shared machine."""
    loop = f"while :; do testload -f {path} --write 64 --iosize 4 -n 0; rm -f {path}; sleep 0.2; done"
    return ("sh", "-c", loop)


def test_an_io_heavy_job_away_comes_home_unless_c_or_its_io_is_private(cluster: harness.Cluster) -> None:
    """All three jobs have node1 as home (where mosrun ran) and start away on nodes 2 and 3; load
    balancing is off, so only their I/O can move them: -c forbids it for the first, and the second's
    I/O never crosses the link."""
    with harness.no_load_balancing(cluster):
        _scenario(cluster)


def _scenario(cluster: harness.Cluster) -> None:
    cluster.up(nodes=3)
    stays = cluster.submit("-3", "-c", *heavy_io("c.io"))  # in the working directory: through FUSE, home
    private = cluster.submit("-2", "-X/scratch", *heavy_io("/scratch/x.io"))
    cluster.wait_for(
        "the -c job's remote I/O rate (its FUSE traffic) and the -X job's I/O rate to be published",
        lambda: (cluster.status(stays).remote_io_kbps or 0.0) >= snapshot.IO_HOME_KBPS
        and (cluster.status(private).io_rate_kbps or 0.0) >= snapshot.IO_HOME_KBPS,
    )
    # From here on every control round sees the -c job as I/O-heavy and away from home.
    heavy = cluster.submit("-2", *heavy_io("heavy.io"))
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
    local = cluster.status(private)  # busy all along, and watched by as many rounds as the heavy job
    assert (local.node, local.home_node, local.migrations, local.phase) == ("node2", "node1", 0, job.Phase.RUNNING)
    assert (local.io_rate_kbps or 0.0) >= snapshot.IO_HOME_KBPS > (local.remote_io_kbps or 0.0)
    cluster.run("moskillall", "-9")
    cluster.wait_for(
        "the jobs to end", lambda: all(cluster.status(j).phase.finished for j in (heavy, stays, private))
    )
