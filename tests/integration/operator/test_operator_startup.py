"""Startup and the operator's footing: the default MosixCluster, the credentials, metrics, leadership."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from mosix.controller.operator import runtime
from tests.integration.operator import conftest, emulator, objects

pytestmark = pytest.mark.looptime


def cluster_status(k8s: emulator.Cluster) -> dict[str, object]:
    return dict((k8s.get(emulator.CLUSTERS, "default") or {}).get("status") or {})


async def test_startup_creates_the_default_cluster(cluster: emulator.Cluster) -> None:
    async with conftest.running(cluster) as k8s:
        made = await k8s.until(lambda: k8s.get(emulator.CLUSTERS, "default"))
        status = await k8s.until(lambda: cluster_status(k8s))
    assert made["spec"]["balancing"]["intervalSeconds"] == 2.0
    assert made["spec"]["queue"]["defaultPriority"] == 50
    assert status == {"nodesAlive": 0, "nodesDead": 0, "queued": 0, "running": 0, "leader": conftest.IDENTITY}


async def test_startup_keeps_an_existing_cluster_and_the_round_counts_it(cluster: emulator.Cluster) -> None:
    await cluster.create(emulator.CLUSTERS, objects.mosix_cluster(clusterName="lab", balancing={"intervalSeconds": 7}))
    for n in (objects.node(1), objects.node(2, alive=False)):
        await cluster.create(emulator.NODES, n)
    await cluster.create(emulator.JOBS, objects.job("8001", queue={}, memoryMb=100000), objects.NAMESPACE)
    async with conftest.running(cluster) as k8s:
        status = await k8s.until(lambda: cluster_status(k8s).get("queued") and cluster_status(k8s))
        kept = k8s.get(emulator.CLUSTERS, "default")
    assert kept is not None
    assert (kept["spec"]["clusterName"], kept["spec"]["balancing"]) == ("lab", {"intervalSeconds": 7})
    assert status == {"nodesAlive": 1, "nodesDead": 1, "queued": 1, "running": 0, "leader": conftest.IDENTITY}


async def test_the_clusters_finalizer_goes_with_the_operator(cluster: emulator.Cluster) -> None:
    async with conftest.running(cluster) as k8s:
        held = await k8s.until(lambda: runtime.FINALIZER in _finalizers(k8s) and _finalizers(k8s))
    assert runtime.FINALIZER in held  # Kopf guards the control-loop daemon with it while we run
    assert runtime.FINALIZER not in _finalizers(cluster)  # and we take it off when we stop


def _finalizers(k8s: emulator.Cluster) -> list[str]:
    return list(((k8s.get(emulator.CLUSTERS, "default") or {}).get("metadata") or {}).get("finalizers") or [])


async def test_kopf_and_the_control_round_use_the_kubeconfig_credentials(cluster: emulator.Cluster) -> None:
    async with conftest.running(cluster) as k8s:
        await k8s.until(lambda: cluster_status(k8s))
    sent = [r for r in cluster.k8s._requests if r.headers.get("User-Agent", "").startswith(("kopf", "OpenAPI"))]
    agents = {r.headers["User-Agent"].split("/")[0] for r in sent}
    assert agents == {"kopf", "OpenAPI-Generator"}
    assert {r.headers.get("Authorization") for r in sent} == {f"Bearer {conftest.TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_metrics_are_served_while_the_operator_runs(cluster: emulator.Cluster,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("MOSIX_METRICS_PORT", str(port))
    monkeypatch.setenv("MOSIX_METRICS_ADDRESS", "127.0.0.1")
    async with conftest.running(cluster) as k8s:
        await k8s.until(lambda: cluster_status(k8s))
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    assert "mosix_decision_seconds_count" in text
    with pytest.raises(ConnectionRefusedError):  # released at cleanup
        await asyncio.open_connection("127.0.0.1", port)


async def test_only_the_leading_operator_acts(cluster: emulator.Cluster) -> None:
    await cluster.create(emulator.CLUSTERS, objects.mosix_cluster())
    await cluster.create(emulator.NODES, objects.node(1))
    other = {"priority": 2**31, "lifetime": 600, "lastseen": objects.stamp()}  # above any replica_priority
    await cluster.patch(emulator.PEERINGS, "mosix", {"status": {"another-operator": other}})
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("8101", placement="Best"), objects.NAMESPACE)
        await asyncio.sleep(30)  # rounds would have placed it by now, were this operator leading
        assert (k8s.get(emulator.JOBS, "8101", objects.NAMESPACE) or {}).get("status") is None
        assert cluster_status(k8s) == {}
        await k8s.patch(emulator.PEERINGS, "mosix", {"status": {"another-operator": None}})
        await k8s.until(lambda: (k8s.get(emulator.JOBS, "8101", objects.NAMESPACE) or {}).get("status", {}).get("node"))
        assert cluster_status(k8s).get("leader") == conftest.IDENTITY


def test_replicas_get_distinct_priorities() -> None:
    from mosix.controller.operator import runtime

    priorities = {runtime.replica_priority(f"mosix-operator-7d9f8-{n}") for n in range(100)}
    assert len(priorities) == 100
    assert all(0 < p <= 2**28 for p in priorities)
