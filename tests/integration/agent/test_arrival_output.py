"""A job that migrated here and ended before its source recorded it here: this agent never saw it running,
yet its output must still go home before the job counts as finished (the race e2e post-copy runs hit)."""

from __future__ import annotations

import collections.abc
import pathlib

import pytest

from mosix.agent import containers, daemon, homeio, jobs, metrics, nodestatus
from mosix.api import job, node
from mosix.client import client, local


@pytest.mark.root
def test_output_of_a_job_that_ended_before_this_agent_saw_it_goes_home(
        make_agent: collections.abc.Callable[..., containers.Manager], tmp_path: pathlib.Path) -> None:
    api = client.Client(local.LocalStore(tmp_path / "store"))
    api.store.init()  # type: ignore[attr-defined]
    manager = make_agent("arrival")
    me = daemon.Identity(name=manager.node, number=3, address="127.0.0.3", port=1, metrics_port=0)
    home_kept = homeio.HomeOutput(tmp_path / "home-of-node1")  # what node1, the job's home, receives

    def to_home(_: node.MosixNode) -> homeio.Sink:
        return home_kept.append

    agent = daemon.Agent(api, manager, me, nodestatus.Sampler(cpus=1, speed=10000), None,
                         home=homeio.HomeOutput(tmp_path / "home-here"), remote_sink=to_home)
    agent.register()
    api.store.create(node.MosixNode, node.MosixNode.model_validate(
        {"metadata": {"name": "node1"}, "spec": {"number": 1, "address": "127.0.0.1"}}).wire())
    j = api.submit(job.MosixJobSpec(command=["sh", "-c", "echo from node3"]), name="arrived")
    key = api.key(j)
    # As a restore from a migration leaves it: the container ran and exited here, unseen by this agent's loop...
    manager.run(jobs.Job(name=daemon.container_name(key), args=("sh", "-c", "echo arrived here; echo done")))
    assert manager.wait(daemon.container_name(key), timeout=60) == 0
    # ...and only now does the store say the job is here (the source patched it after the peer confirmed).
    api.patch_job_status(key, {"phase": "Running", "node": manager.node, "homeNode": "node1", "where": manager.node})
    try:
        agent.reconcile()
        st = api.get_job(key).status
        assert st.phase == job.Phase.SUCCEEDED
        assert home_kept.path(key, "stdout").read_text() == "arrived here\ndone\n"
    finally:
        metrics.forget_job(api.store.namespace, "arrived")
