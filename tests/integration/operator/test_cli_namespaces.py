"""mosps on Kubernetes: `-A` (every user's processes) lists the jobs of every namespace, named
NAMESPACE/NAME, unless --namespace or $MOSIX_NAMESPACE names one; without it, only the kubeconfig's namespace.

The commands use the synchronous Kubernetes client, so they run in a thread while the emulator
serves from this test's loop."""

from __future__ import annotations

import asyncio
import os
import pathlib

import pytest

from mosix.cli import mosps
from tests.integration.operator import emulator, objects


async def test_mosps_all_lists_every_namespace(cluster: emulator.Cluster, tmp_path: pathlib.Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MOSIX_STATE", str(tmp_path / "no-local-cluster"))
    monkeypatch.delenv("MOSIX_NAMESPACE", raising=False)
    for namespace, user in (("team-a", "ann"), ("team-b", "bob")):
        body = objects.job("1001", status=objects.running_on("node1"), user=user)
        body["metadata"]["namespace"] = namespace
        await cluster.create(emulator.JOBS, body, namespace)
    kubeconfig = os.environ["KUBECONFIG"]

    async def pids(*argv: str) -> list[str]:
        assert await asyncio.to_thread(mosps.main, [*argv, "--kubeconfig", kubeconfig]) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]

    assert await pids("-A") == ["team-a/1001", "team-b/1001"]
    assert await pids("-AMn") == ["team-a/1001", "team-b/1001"]
    assert await pids("-A", "--namespace", "team-b") == ["1001"]
    monkeypatch.setenv("MOSIX_NAMESPACE", "team-a")  # named in the environment: that one only
    assert await pids("-A") == ["1001"]
    monkeypatch.delenv("MOSIX_NAMESPACE")
    assert await pids() == []  # the kubeconfig's namespace (default) holds none, and none is ours
