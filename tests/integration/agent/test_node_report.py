"""What an agent's report puts in its MosixNode (the mosctl status fields), through its reconcile loop over
a store, with real jobs under runc: two agents on 127.0.0.2 and .3."""

from __future__ import annotations

import prometheus_client
import pytest

from mosix.api import job, node
from tests.integration.agent.test_procfiles import REPORT, Cluster, cluster, loop, peers  # noqa: F401  (fixtures)


@pytest.mark.root
def test_the_report_counts_the_nodes_jobs_and_shows_its_policy(cluster: Cluster) -> None:  # noqa: F811
    api, (a, b) = cluster.api, cluster.agents
    keys = [api.submit(job.MosixJobSpec(command=list(REPORT), placement=job.Placement.NODE, node=n)).name
            for n in ("2", "2", "3")]
    cluster.until("the jobs to run", lambda: all(api.get_job(k).status.phase == job.Phase.RUNNING for k in keys))
    a.report()
    st = api.get_node(a.me.name).status
    assert (st.state, st.accept, st.procs, st.cpus, st.speed) == (node.NodeState.RUNNING, True, 2, 1, 10000)
    assert st.guests.running == 0 and st.local_procs == 2  # started on node 2: their home is here
    assert 0 < st.memory.available_mb <= st.memory.total_mb
    assert st.daemons.mosix == node.DaemonState.UP and st.heartbeat is not None
    api.patch_job(keys[0], {"migration": {"to": b.me.name, "serial": 1}})
    cluster.until("one job moved to node 3", lambda: api.get_job(keys[0]).status.node == b.me.name
                  and api.get_job(keys[0]).status.phase == job.Phase.RUNNING)
    b.report()
    st = api.get_node(b.me.name).status
    assert (st.procs, st.guests.running, st.local_procs) == (2, 1, 1)  # the one from node 2 is a guest here
    for policy, state in (({"block": True}, node.NodeState.BLOCKED), ({"expel": True}, node.NodeState.EXPELLING)):
        api.store.patch(node.MosixNode, a.me.name, {"spec": {"block": False, "expel": False, **policy}})
        a.report()
        st = api.get_node(a.me.name).status
        assert (st.state, st.accept) == (state, False)


@pytest.mark.root
@pytest.mark.parametrize("after", [job.AfterCheckpoint.STOP, job.AfterCheckpoint.EXIT])
def test_a_job_checkstopped_or_exited_leaves_the_usage_metrics(cluster: Cluster,  # noqa: F811
                                                               after: job.AfterCheckpoint) -> None:
    """Its CPU and RSS series go with it (nothing runs to measure); the size of its set, still there, stays."""
    api, (a, _) = cluster.api, cluster.agents
    key = api.submit(job.MosixJobSpec(command=list(REPORT), placement=job.Placement.NODE, node="2")).name
    cluster.until("it runs", lambda: api.get_job(key).status.phase == job.Phase.RUNNING)
    a.report()
    labels = {"namespace": api.store.namespace, "mosixjob": key}
    assert prometheus_client.REGISTRY.get_sample_value("mosix_job_rss_bytes", labels)
    api.patch_job(key, {"checkpointRequest": {"after": after.value, "serial": 1}})
    cluster.until("the checkpoint", lambda: api.get_job(key).status.observed_checkpoint_serial == 1)
    a.report()
    assert prometheus_client.REGISTRY.get_sample_value("mosix_job_rss_bytes", labels) is None
    assert prometheus_client.REGISTRY.get_sample_value("mosix_job_cpu_seconds", labels) is None
    assert prometheus_client.REGISTRY.get_sample_value("mosix_checkpoint_bytes", labels)
