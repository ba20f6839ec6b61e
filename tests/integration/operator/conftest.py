"""The real operator (the handlers operator/main.py registers) in the test's event loop, against kmock.

Kopf logs in through the operator's own login handler, from a kubeconfig naming the emulator, exactly
as out of a cluster; the CRDs of crds/ are the emulator's resources; the test time is looptime's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import kmock
import kopf
import pytest

from mosix.controller.operator import runtime
from tests.integration.operator import emulator

TOKEN = "mosix-test-token"
IDENTITY = "mosix-operator-test"


def _load_main() -> None:
    """Imports operator/main.py as `kopf run` does, so its handlers register."""
    spec = importlib.util.spec_from_file_location("mosix_operator_main", emulator.ROOT / "operator" / "main.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


_load_main()


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": emulator.Emulator}


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator, tmp_path: pathlib.Path,
            monkeypatch: pytest.MonkeyPatch) -> emulator.Cluster:
    """An empty cluster with mosix's CRDs and Kopf's peering object, and a kubeconfig naming it."""
    assert isinstance(kmock, emulator.Emulator)
    emulator.declare(kmock)
    kmock.objects[emulator.PEERINGS, None, runtime.PEERING] = {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": runtime.PEERING}}
    monkeypatch.setenv("KUBECONFIG", str(emulator.kubeconfig(kmock, tmp_path / "kubeconfig", TOKEN)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("MOSIX_METRICS_PORT", "0")
    monkeypatch.setenv("POD_ID", IDENTITY)
    return emulator.Cluster(kmock)


@contextlib.asynccontextmanager
async def running(cluster: emulator.Cluster) -> AsyncIterator[emulator.Cluster]:
    """The operator running, as `kopf run -A --peering=mosix operator/main.py` runs it.

    Entered in the test itself: Kopf, when it stops, cancels every task younger than itself,
    which a fixture's teardown task would be.
    """
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        clusterwide=True, peering_name=runtime.PEERING, stop_flag=stop, ready_flag=ready,
        settings=kopf.OperatorSettings(), memo=kopf.Memo()))
    try:
        async with asyncio.timeout(60):
            await ready.wait()
        yield cluster
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await task
