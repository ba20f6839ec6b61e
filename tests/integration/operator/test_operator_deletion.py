"""Deleting a MosixJob: the finalizer holds a placed, unfinished job until the agent on its node reports
it stopped and cleaned (condition Cleaned), and lets every other job go at once."""

from __future__ import annotations

import json

import pytest

from mosix.api import meta
from mosix.controller.operator import runtime
from tests.integration.operator import conftest, emulator, objects

pytestmark = pytest.mark.looptime
NS = objects.NAMESPACE


def retries(k8s: emulator.Cluster, name: str) -> int:
    """How often the deletion handler has asked to wait, as Kopf records it on the object."""
    annotations = ((k8s.get(emulator.JOBS, name, NS) or {}).get("metadata") or {}).get("annotations") or {}
    return int(json.loads(annotations.get(f"{meta.GROUP}/deleting", "{}")).get("retries", 0))


def finalized(k8s: emulator.Cluster, name: str) -> bool:
    return runtime.FINALIZER in ((k8s.get(emulator.JOBS, name, NS) or {}).get("metadata") or {}).get("finalizers", [])


async def test_a_placed_job_goes_only_when_its_agent_has_cleaned_up(cluster: emulator.Cluster) -> None:
    await cluster.create(emulator.CLUSTERS, objects.mosix_cluster())
    await cluster.create(emulator.NODES, objects.node(1))
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("7001", placement="Node", node="1"), NS)
        await k8s.until(lambda: (k8s.get(emulator.JOBS, "7001", NS) or {}).get("status", {}).get("node"))
        await k8s.delete(emulator.JOBS, "7001", NS)
        stopping = await k8s.until(lambda: k8s.events("Stopping", "7001"))
        await k8s.until(lambda: retries(k8s, "7001") >= 2)  # asked again and again: still held
        held = k8s.get(emulator.JOBS, "7001", NS)
        assert held is not None and held["metadata"]["deletionTimestamp"]
        await k8s.patch(emulator.JOBS, "7001", {"status": {"conditions": [objects.CLEANED]}}, NS, status=True)
        await k8s.until(lambda: k8s.get(emulator.JOBS, "7001", NS) is None)
    assert stopping[0]["message"] == "waiting for the agent on node1 to stop the job and clean its checkpoints"


async def test_a_job_never_placed_goes_at_once(cluster: emulator.Cluster) -> None:
    await cluster.create(emulator.CLUSTERS, objects.mosix_cluster())
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("7101", queue={}), NS)
        await k8s.until(lambda: finalized(k8s, "7101"))
        await k8s.delete(emulator.JOBS, "7101", NS)
        await k8s.until(lambda: k8s.get(emulator.JOBS, "7101", NS) is None)
    assert k8s.events("Stopping", "7101") == []


async def test_a_job_on_a_node_that_died_goes_at_once(cluster: emulator.Cluster) -> None:
    await cluster.create(emulator.CLUSTERS, objects.mosix_cluster())
    await cluster.create(emulator.NODES, objects.node(1))
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("7201", placement="Node", node="1"), NS)
        await k8s.until(lambda: (k8s.get(emulator.JOBS, "7201", NS) or {}).get("status", {}).get("node"))
        await k8s.delete(emulator.JOBS, "7201", NS)
        await k8s.until(lambda: k8s.events("Stopping", "7201"))
        await k8s.patch(emulator.NODES, "node1", {"status": objects.node(1, alive=False)["status"]}, status=True)
        await k8s.until(lambda: k8s.get(emulator.JOBS, "7201", NS) is None)
