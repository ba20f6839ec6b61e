"""mosrun -A through the agents' reconcile loops (real runc and CRIU, two agents on 127.0.0.2 and .3): a
job checkpoints every interval where it starts, and goes on after it migrates. -A's minute is shortened."""

from __future__ import annotations

import pytest

from mosix.agent import daemon
from mosix.api import job
from tests.integration.agent.test_procfiles import REPORT, Cluster, cluster, loop, peers  # noqa: F401  (fixtures)


@pytest.mark.root
def test_periodic_checkpoints_go_on_after_the_job_migrates(cluster: Cluster,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "MINUTE", 1.0)  # -A1: a checkpoint every second
    api, (a, b) = cluster.api, cluster.agents
    spec = job.MosixJobSpec(command=list(REPORT), placement=job.Placement.NODE, node="2",
                            checkpoint=job.CheckpointPolicy(interval_minutes=1, max_sets=50))
    key = api.submit(spec, name="every").name

    def sets() -> list[job.CheckpointSet]:
        return api.get_job(key).status.checkpoints

    cluster.until("two periodic checkpoints on node 2", lambda: len(sets()) >= 2)
    assert api.get_job(key).status.node == a.me.name
    api.patch_job(key, {"migration": {"to": b.me.name, "serial": 1}})
    cluster.until("the job to run on node 3", lambda: api.get_job(key).status.node == b.me.name
                  and api.get_job(key).status.phase == job.Phase.RUNNING)
    after = len(sets())
    cluster.until("two more, made on node 3", lambda: len(sets()) >= after + 2)
    assert all(s.node == b.me.name for s in sets()[after:])
