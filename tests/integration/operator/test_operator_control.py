"""What the handlers run in their worker threads, called directly over the emulator: each branch of
the deletion verdict, the first status and its idempotence, the default MosixCluster, the credentials."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import kopf
import pytest
from kubernetes.config import incluster_config

from mosix.api import cluster as mosix_cluster
from mosix.api import job
from mosix.client import client, kube, store
from mosix.controller.operator import control, credentials
from tests.integration.operator import conftest, emulator, objects

NS = objects.NAMESPACE


def status(k8s: emulator.Cluster, name: str) -> dict[str, Any]:
    return dict((k8s.get(emulator.JOBS, name, NS) or {}).get("status") or {})


@pytest.fixture
def api(cluster: emulator.Cluster) -> client.Client:
    """The operator's own client over the emulator, built as its startup builds it."""
    connection = credentials.api_client(credentials.configuration())
    return client.Client(kube.KubeStore(namespace=kube.ALL_NAMESPACES, api_client=connection))


@pytest.mark.parametrize(("status", "node_alive", "waits"), [
    pytest.param(None, True, False, id="never-placed"),
    pytest.param(objects.running_on("node1"), True, True, id="running-on-a-live-node"),
    pytest.param({**objects.running_on("node1"), "phase": "Pending"}, True, True, id="placed-not-started"),
    pytest.param({**objects.running_on("node1"), "conditions": [objects.CLEANED]}, True, False, id="cleaned"),
    pytest.param({**objects.running_on("node1"), "phase": "Succeeded"}, True, False, id="finished"),
    pytest.param(objects.running_on("node1"), False, False, id="node-dead"),
    pytest.param(objects.running_on("node1"), None, False, id="node-gone"),
])
async def test_when_a_deleted_job_may_go(cluster: emulator.Cluster, api: client.Client, status: dict[str, Any] | None,
                                         node_alive: bool | None, waits: bool) -> None:
    await cluster.create(emulator.CLUSTERS, objects.mosix_cluster())
    if node_alive is not None:  # its heartbeat stamped now, not when the tests were collected
        await cluster.create(emulator.NODES, objects.node(1, alive=node_alive))
    body = await cluster.create(emulator.JOBS, objects.job("9001", status=status), NS)
    why = await asyncio.to_thread(control.release, api, body)
    assert why == ("waiting for the agent on node1 to stop the job and clean its checkpoints" if waits else None)


async def test_the_first_status_is_written_once(cluster: emulator.Cluster, api: client.Client) -> None:
    await cluster.create(emulator.JOBS, objects.job("9101", queue={}), NS)
    running = objects.running_on("node2")  # once: its startTime is stamped from the clock
    await cluster.create(emulator.JOBS, objects.job("9102", status=running), NS)
    first = await asyncio.to_thread(control.admit, api, "research/9101")
    again = await asyncio.to_thread(control.admit, api, "research/9101")
    reported = await asyncio.to_thread(control.admit, api, "research/9102")
    gone = await asyncio.to_thread(control.admit, api, "research/9199")
    assert first is not None and again is not None and reported is not None and gone is None
    assert (first.reason, first.message, again.reason) == ("Queued", "queued with priority 50", "Queued")
    assert status(cluster, "9101") == {"phase": "Queued", "where": "queue", "priority": 50}
    assert status(cluster, "9102") == running


async def test_a_stale_read_is_refused_not_overwritten(cluster: emulator.Cluster, api: client.Client) -> None:
    made = await cluster.create(emulator.JOBS, objects.job("9201"), NS)
    await cluster.patch(emulator.JOBS, "9201", {"status": {"node": "node1", "phase": "Pending"}}, NS, status=True)
    stale = {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}, "status": {"phase": "Queued"}}
    with pytest.raises(store.Conflict):
        await asyncio.to_thread(api.store.patch, job.MosixJob, "research/9201", stale, status=True)
    assert status(cluster, "9201") == {"node": "node1", "phase": "Pending"}


async def test_the_default_cluster_is_made_once_and_then_kept(cluster: emulator.Cluster, api: client.Client) -> None:
    made = await asyncio.to_thread(control.ensure_cluster, api)
    await cluster.patch(emulator.CLUSTERS, mosix_cluster.DEFAULT_NAME, {"spec": {"clusterName": "lab"}})
    again = await asyncio.to_thread(control.ensure_cluster, api)
    assert (made, again) == (True, False)
    assert (cluster.get(emulator.CLUSTERS, mosix_cluster.DEFAULT_NAME) or {})["spec"]["clusterName"] == "lab"


def test_kopf_gets_the_kubeconfig_credentials(cluster: emulator.Cluster) -> None:
    info = credentials.connection_info(credentials.configuration())
    assert (info.server, info.scheme, info.token) == (str(cluster.k8s.url).rstrip("/"), "Bearer", conftest.TOKEN)


def test_no_credentials_is_a_login_error(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kopf.LoginError):
        credentials.configuration()


def test_in_a_pod_the_service_account_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    (tmp_path / "token").write_text("service-account-token")
    (tmp_path / "ca.crt").write_text("a CA")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "not-this-one"))
    info = credentials.connection_info(credentials.configuration())
    assert (info.server, info.token, info.ca_path) == ("https://127.0.0.1:6443", "service-account-token",
                                                      str(tmp_path / "ca.crt"))
