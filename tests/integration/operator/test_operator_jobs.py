"""The control round through Kopf: first status, placement, the queue, requests, recovery and failure,
each with its Kubernetes Events, as the emulator holds them afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.operator import conftest, emulator, objects

pytestmark = pytest.mark.looptime
NS = objects.NAMESPACE


def status(k8s: emulator.Cluster, name: str) -> dict[str, Any]:
    return dict((k8s.get(emulator.JOBS, name, NS) or {}).get("status") or {})


async def setup(k8s: emulator.Cluster, *nodes: dict[str, Any]) -> None:
    await k8s.create(emulator.CLUSTERS, objects.mosix_cluster())
    for n in nodes:
        await k8s.create(emulator.NODES, n)


async def test_a_new_job_gets_its_first_status_and_an_event(cluster: emulator.Cluster) -> None:
    await setup(cluster)
    async with conftest.running(cluster) as k8s:
        made = await k8s.create(emulator.JOBS, objects.job("1001", homeNode="mos1"), NS)
        await k8s.create(emulator.JOBS, objects.job("1002", queue={"priority": 20}), NS)
        first = await k8s.until(lambda: status(k8s, "1001").get("phase") and status(k8s, "1001"))
        queued = await k8s.until(lambda: status(k8s, "1002").get("phase") and status(k8s, "1002"))
        submitted = await k8s.until(lambda: k8s.events("Submitted", "1001"))
        waiting = await k8s.until(lambda: k8s.events("Queued", "1002"))
    assert (first["phase"], first["where"], first["homeNode"]) == ("Pending", "starting", "mos1")
    assert (queued["phase"], queued["where"], queued["priority"]) == ("Queued", "queue", 20)
    assert submitted[0]["involvedObject"] == {"apiVersion": "mosix.dev/v1alpha1", "kind": "MosixJob",
                                              "name": "1001", "namespace": NS, "uid": made["metadata"]["uid"]}
    assert (submitted[0]["type"], waiting[0]["type"], waiting[0]["message"]) == (
        "Normal", "Normal", "queued with priority 20")


async def test_best_jobs_spread_over_the_nodes(cluster: emulator.Cluster) -> None:
    await setup(cluster, objects.node(1), objects.node(2), objects.node(3))
    async with conftest.running(cluster) as k8s:
        for name in ("2001", "2002", "2003"):
            await k8s.create(emulator.JOBS, objects.job(name, placement="Best"), NS)
        placed = [await k8s.until(lambda n=name: status(k8s, n).get("node") and status(k8s, n))  # type: ignore[misc]
                  for name in ("2001", "2002", "2003")]
        events = await k8s.until(lambda: len(k8s.events("Placed")) == 3 and k8s.events("Placed"))
    assert sorted(s["node"] for s in placed) == ["node1", "node2", "node3"]
    assert {s["phase"] for s in placed} == {"Pending"}
    assert sorted(e["involvedObject"]["name"] for e in events) == ["2001", "2002", "2003"]
    assert all(e["message"].startswith("placed on node") for e in events)


async def test_a_queued_job_too_big_for_every_node_waits_first_in_line(cluster: emulator.Cluster) -> None:
    await setup(cluster, objects.node(1), objects.node(2), objects.node(3))
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("3001", queue={}, memoryMb=100000), NS)
        first = await k8s.until(lambda: status(k8s, "3001").get("where") == "queue" and status(k8s, "3001"))
        await k8s.until(lambda: (k8s.get(emulator.CLUSTERS, "default") or {}).get("status", {}).get("queued") == 1)
        await k8s.create(emulator.JOBS, objects.job("3002", placement="Best"), NS)
        await k8s.until(lambda: status(k8s, "3002").get("node"))  # later rounds went by; it still waits
        later = status(k8s, "3001")
    assert (first["where"], first["phase"], first["priority"]) == ("queue", "Queued", 50)
    assert (later["where"], later["phase"], later.get("node")) == ("queue", "Queued", None)
    assert "queuePosition" not in later  # its place shifts with every job admitted: mosq computes it
    assert later["message"] == "waiting: NoMemory"


async def test_a_migration_request_becomes_the_target_node(cluster: emulator.Cluster) -> None:
    await setup(cluster, objects.node(1), objects.node(2), objects.node(3))
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("4001", placement="Node", node="1"), NS)
        await k8s.until(lambda: status(k8s, "4001").get("node") == "node1")
        await k8s.patch(emulator.JOBS, "4001", {"status": objects.running_on("node1")}, NS, status=True)
        await k8s.patch(emulator.JOBS, "4001", {"spec": {"migration": {"to": "node3", "serial": 1}}}, NS)
        moved = await k8s.until(lambda: status(k8s, "4001").get("targetNode") and status(k8s, "4001"))
        requested = await k8s.until(lambda: k8s.events("MigrationRequested", "4001"))
    assert (moved["targetNode"], moved["observedMigrationSerial"], moved["node"]) == ("node3", 1, "node1")
    assert requested[0]["message"] == "migrate to node3 (requested)"


async def test_a_job_on_a_dead_node_restarts_elsewhere_from_its_checkpoint(cluster: emulator.Cluster) -> None:
    await setup(cluster)  # the job's last report first, then its node's silence: nothing placed it meanwhile
    await cluster.create(emulator.JOBS, objects.job(
        "5001", status=objects.running_on("node1", objects.checkpoint("ckpt.5001.1", "node2"))), NS)
    for n in (objects.node(1, alive=False), objects.node(2), objects.node(3)):
        await cluster.create(emulator.NODES, n)
    async with conftest.running(cluster) as k8s:
        recovered = await k8s.until(lambda: status(k8s, "5001").get("restoreFrom") and status(k8s, "5001"))
        events = await k8s.until(lambda: k8s.events("Recovering", "5001"))
    assert (recovered["restoreFrom"], recovered["phase"]) == ("ckpt.5001.1", "Pending")
    assert recovered["node"] in {"node2", "node3"}
    assert events[0]["type"] == "Warning"
    assert events[0]["message"].startswith("node node1 died; restarting on node")


async def test_a_job_on_a_dead_node_without_a_checkpoint_fails(cluster: emulator.Cluster) -> None:
    await setup(cluster)
    await cluster.create(emulator.JOBS, objects.job("6001", status=objects.running_on("node1")), NS)
    for n in (objects.node(1, alive=False), objects.node(2)):
        await cluster.create(emulator.NODES, n)
    async with conftest.running(cluster) as k8s:
        failed = await k8s.until(lambda: status(k8s, "6001").get("phase") == "Failed" and status(k8s, "6001"))
        events = await k8s.until(lambda: k8s.events("NodeDiedNoCheckpoint", "6001"))
        summary = await k8s.until(lambda: (k8s.get(emulator.CLUSTERS, "default") or {}).get("status"))
    assert (failed["where"], failed["message"]) == ("failed", "node node1 died and it had no checkpoint")
    assert events[0]["type"] == "Warning"
    assert (summary["nodesAlive"], summary["nodesDead"]) == (1, 1)


async def test_freeze_and_continue_requests_become_desired_state(cluster: emulator.Cluster) -> None:
    await setup(cluster, objects.node(1))
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("4101", placement="Node", node="1"), NS)
        await k8s.until(lambda: status(k8s, "4101").get("node") == "node1")
        await k8s.patch(emulator.JOBS, "4101", {"status": objects.running_on("node1")}, NS, status=True)
        await k8s.patch(emulator.JOBS, "4101", {"spec": {"frozen": True}}, NS)
        frozen = await k8s.until(lambda: status(k8s, "4101").get("frozen"))
        await k8s.until(lambda: k8s.events("FreezeRequested", "4101"))
        await k8s.patch(emulator.JOBS, "4101", {"spec": {"frozen": False}}, NS)
        await k8s.until(lambda: k8s.events("ContinueRequested", "4101"))
        thawed = status(k8s, "4101")
    assert frozen == "Manual"
    assert "frozen" not in thawed
