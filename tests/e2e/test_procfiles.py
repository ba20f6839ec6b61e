"""A job steering itself through /run/mosix, as a MOSIX program does through /proc/self: it asks to move to
node 2, changes its memory need and locks itself, and the cluster (control plane, agents, commands) does as
asked. The jobs check what they read themselves and say so by their exit code, which works the same on the
local cluster and on a real API server."""

from __future__ import annotations

from mosix.api import job
from tests.e2e import harness

pytestmark = harness.RUNS_JOBS

# Exit 0 once /run/mosix says node2 after one migration; 3: it did not start on node1; 4: never got there.
MOVE_ITSELF = (
    '[ "$(cat /run/mosix/whereami)" = node1 ] || exit 3;'
    " echo 200 > /run/mosix/needmem; echo 2 > /run/mosix/migrate; i=0;"
    ' until [ "$(cat /run/mosix/whereami) $(cat /run/mosix/nmigs)" = "node2 1" ]; do'
    " i=$((i+1)); [ $i -lt 900 ] || exit 4; sleep 0.2; done"
)
LOCK_ITSELF = "echo 1 > /run/mosix/lock; while :; do sleep 0.2; done"


def test_a_job_moves_itself_by_writing_a_node_number_and_sets_its_memory_need(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", "sh", "-c", MOVE_ITSELF)
    cluster.wait_for("the job to finish", lambda: cluster.status(name).phase.finished, timeout=120)
    status = cluster.status(name)
    assert (status.phase, status.exit_code, status.node, status.migrations) == (
        job.Phase.SUCCEEDED,
        0,
        "node2",
        1,
    )
    spec = cluster.api().get_job(name).spec
    assert spec.memory_mb == 200
    assert spec.migration is not None and spec.migration.to == "node2"


def test_a_job_that_locks_itself_is_not_migrated_on_request(cluster: harness.Cluster) -> None:
    cluster.up(nodes=2)
    name = cluster.submit("-1", "sh", "-c", LOCK_ITSELF)
    cluster.wait_for("the job to lock itself", lambda: cluster.api().get_job(name).spec.locked)
    refused = cluster.run("migrate", name, "2", check=False)
    assert refused.returncode == 1 and "locked" in refused.stderr
    assert (cluster.status(name).node, cluster.status(name).phase) == ("node1", job.Phase.RUNNING)
