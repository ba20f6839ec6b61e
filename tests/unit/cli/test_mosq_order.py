"""mosq's order is the control plane's: a mixed queue (priorities set and defaulted under a non-default
cluster default, advance, retard, run, cngpri, a gang, jobs not waiting) is listed in the order the
policy core admits it."""

from __future__ import annotations

import datetime
import time

import pytest

from mosix.api import cluster, job, node
from mosix.cli import mosq
from mosix.client import client
from mosix.controller import views
from mosix.policy import decide
from tests.unit.cli.conftest import submit


def _spec(**fields: object) -> job.MosixJobSpec:
    return job.MosixJobSpec.model_validate({"command": ["testload"], "placement": "Best"} | fields)


@pytest.fixture
def mixed(api: client.Client) -> client.Client:
    api.store.create(cluster.MosixCluster, cluster.MosixCluster.model_validate(
        {"metadata": {"name": cluster.DEFAULT_NAME}, "spec": {"queue": {"defaultPriority": 55}}}).wire())
    beat = datetime.datetime.now(datetime.UTC).isoformat()
    for n in api.nodes():  # room for every waiting process at once
        api.store.patch(node.MosixNode, n.name, {"status": {
            "state": "Running Normally", "heartbeat": beat, "cpus": 16, "speed": 1000, "load": 0.0,
            "accept": True, "avail": True, "memory": {"availableMb": 64000, "totalMb": 64000}}}, status=True)
    priorities: list[int | None] = [None, 50, 60, None, 20, 55, None, 50, 60, None, 20, None]
    for i, pri in enumerate(priorities):
        queue = {} if pri is None else {"priority": pri}
        extra: dict[str, object] = {"parallel": 3} if i == 6 else {"memoryMb": 500} if i == 3 else {}
        submit(api, str(101 + i), f"mosrun -q job{i}", _spec(queue=queue, **extra))
        time.sleep(0.002)  # distinct creation times: first come, first served
    submit(api, "120", "mosrun -q running", _spec(queue={}), {"phase": "Running", "node": "mos1", "homeNode": "mos1"})
    submit(api, "121", "mosrun -b direct", _spec())
    for argv in (["advance", "109"], ["retard", "102"], ["run", "112"], ["cngpri", "20", "104"],
                 ["advance", "111"], ["retard", "101"]):
        assert mosq.main(argv) == 0
    return api


def test_mosq_lists_the_queue_in_the_order_the_control_plane_admits_it(
        mixed: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert mosq.main(["list"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    by_key = {mixed.key(j): j for j in mixed.jobs()}
    kept = views.JobViews()
    snap = views.snapshot_of(by_key, mixed.nodes(), mixed.get_cluster(), time.time(), kept)
    admitted = [a.job for a in decide.decide(snap).admissions if by_key[a.job].spec.queue is not None]
    assert [each[4] for each in kept.index.queue()] == shown  # the controller's sorted queue
    assert admitted == shown  # and the order the policy starts it in
    assert shown == ["112",  # mosq run: first, whatever its priority
                     "111", "104", "105",  # 20: 111 advanced, 104 by cngpri (keeps its place in time)
                     "108", "102",  # 50: 102 retarded
                     "106", "107", "110", "101",  # 55, set or the cluster's default alike: 101 retarded
                     "109", "103"]  # 60: 109 advanced
