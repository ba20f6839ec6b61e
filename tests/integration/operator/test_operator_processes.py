"""Gangs (-P) and commands files (-S) through Kopf: per-process placement, the job summarized from the
processes its agents report, the line-by-line start of a commands file, and deletion held until every
live node's agent stopped its processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.operator import conftest, emulator, objects

pytestmark = pytest.mark.looptime
NS = objects.NAMESPACE


def status(k8s: emulator.Cluster, name: str) -> dict[str, Any]:
    return dict((k8s.get(emulator.JOBS, name, NS) or {}).get("status") or {})


def processes(k8s: emulator.Cluster, name: str) -> dict[str, Any]:
    return dict(status(k8s, name).get("processes") or {})


async def report(k8s: emulator.Cluster, name: str, index: str, phase: str, code: int | None = None) -> None:
    """What the agent on the process's node patches: its own entry of the map, nothing else."""
    fields: dict[str, Any] = {"phase": phase, "startTime": objects.stamp(5)}
    if code is not None:
        fields |= {"exitCode": code, "completionTime": objects.stamp()}
    await k8s.patch(emulator.JOBS, name, {"status": {"processes": {index: fields}}}, NS, status=True)


async def setup(k8s: emulator.Cluster) -> None:
    await k8s.create(emulator.CLUSTERS, objects.mosix_cluster())
    for n in (1, 2, 3):
        await k8s.create(emulator.NODES, objects.node(n))


async def test_a_gang_is_placed_process_by_process_and_fails_naming_its_failure(cluster: emulator.Cluster) -> None:
    await setup(cluster)
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("8001", parallel=3, queue={}), NS)
        placed = await k8s.until(lambda: len(processes(k8s, "8001")) == 3 and processes(k8s, "8001"))
        events = await k8s.until(lambda: k8s.events("Placed", "8001"))
        for i in "012":
            await report(k8s, "8001", i, "Running")
        running = await k8s.until(lambda: status(k8s, "8001").get("phase") == "Running" and status(k8s, "8001"))
        await report(k8s, "8001", "0", "Succeeded", 0)
        await report(k8s, "8001", "1", "Failed", 5)
        await report(k8s, "8001", "2", "Succeeded", 0)
        failed = await k8s.until(lambda: status(k8s, "8001").get("phase") == "Failed" and status(k8s, "8001"))
        warned = await k8s.until(lambda: k8s.events("Failed", "8001"))
    assert sorted(p["node"] for p in placed.values()) == ["node1", "node2", "node3"]
    assert {p["phase"] for p in placed.values()} == {"Pending"}
    assert events[0]["message"] == "processes placed on node1, node2, node3 (Queue)"
    assert sorted(running["where"].split(",")) == ["node1", "node2", "node3"]
    node = placed["1"]["node"]
    assert (failed["exitCode"], failed["where"], failed["message"]) == (
        5, "failed", f"process 1 failed on {node}: exit code 5")
    assert (warned[0]["type"], warned[0]["message"]) == ("Warning", failed["message"])


async def test_a_commands_file_starts_its_next_line_as_one_finishes(cluster: emulator.Cluster) -> None:
    await setup(cluster)
    lines = [["echo", "1"], ["echo", "2"], ["echo", "3"]]
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("8101", command=[], commands={"maxRunning": 2, "lines": lines}),
                         NS)
        first = await k8s.until(lambda: processes(k8s, "8101"))
        await report(k8s, "8101", "0", "Running")
        await report(k8s, "8101", "1", "Running")
        counted = await k8s.until(lambda: status(k8s, "8101").get("runningLines") == 2 and status(k8s, "8101"))
        await report(k8s, "8101", "1", "Succeeded", 0)
        third = await k8s.until(lambda: processes(k8s, "8101").get("2"))
        placed = await k8s.until(lambda: k8s.events("Placed", "8101"))
        await report(k8s, "8101", "2", "Running")
        await report(k8s, "8101", "0", "Succeeded", 0)
        await report(k8s, "8101", "2", "Succeeded", 0)
        done = await k8s.until(lambda: status(k8s, "8101").get("phase") == "Succeeded" and status(k8s, "8101"))
    assert sorted(first) == ["0", "1"]
    assert (counted["finishedLines"], counted["phase"]) == (0, "Running")
    assert third["phase"] == "Pending"
    assert [e["message"].split(" placed")[0] for e in placed] == ["lines 1-2", "line 3"]
    assert (done["exitCode"], done["runningLines"], done["finishedLines"]) == (0, 0, 3)


async def test_a_deleted_gang_waits_for_every_agent_to_stop_its_processes(cluster: emulator.Cluster) -> None:
    await setup(cluster)
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("8201", parallel=2, queue={}), NS)
        placed = await k8s.until(lambda: len(processes(k8s, "8201")) == 2 and processes(k8s, "8201"))
        await k8s.delete(emulator.JOBS, "8201", NS)
        stopping = await k8s.until(lambda: k8s.events("Stopping", "8201"))
        await k8s.patch(emulator.JOBS, "8201", {"status": {"processes": {"0": {"phase": "Stopped"}}}}, NS,
                        status=True)
        await k8s.until(lambda: len(k8s.events("Stopping", "8201")) >= 1)
        assert k8s.get(emulator.JOBS, "8201", NS) is not None  # one agent has not stopped its process yet
        await k8s.patch(emulator.JOBS, "8201", {"status": {"processes": {"1": {"phase": "Stopped"}}}}, NS,
                        status=True)
        await k8s.until(lambda: k8s.get(emulator.JOBS, "8201", NS) is None)
    nodes = ", ".join(sorted(p["node"] for p in placed.values()))
    assert stopping[0]["message"] == f"waiting for the agents on {nodes} to stop the job's processes"


async def test_requests_to_one_process_become_its_desired_state(cluster: emulator.Cluster) -> None:
    """migrate {id}.1 {node} and migrate {id}.0 freeze/continue (spec.processes) through Kopf: the process's
    targetNode and frozen, once per serial, with their Events; the job and the other process are left alone."""
    await setup(cluster)
    async with conftest.running(cluster) as k8s:
        await k8s.create(emulator.JOBS, objects.job("8301", parallel=2, queue={}), NS)
        placed = await k8s.until(lambda: len(processes(k8s, "8301")) == 2 and processes(k8s, "8301"))
        for i in "01":
            await report(k8s, "8301", i, "Running")
        await k8s.until(lambda: status(k8s, "8301").get("phase") == "Running")
        to = next(n for n in ("node1", "node2", "node3") if n not in {p["node"] for p in placed.values()})
        await k8s.patch(emulator.JOBS, "8301", {"spec": {"processes": {
            "1": {"migration": {"to": to, "serial": 1}}, "0": {"frozen": True}}}}, NS)
        asked = await k8s.until(lambda: processes(k8s, "8301")["1"].get("targetNode") and processes(k8s, "8301"))
        frozen = await k8s.until(lambda: processes(k8s, "8301")["0"].get("frozen") and processes(k8s, "8301"))
        moved = await k8s.until(lambda: k8s.events("MigrationRequested", "8301"))
        froze = await k8s.until(lambda: k8s.events("FreezeRequested", "8301"))
        # what the agents write: process 1 runs on its target, process 0 is frozen
        await k8s.patch(emulator.JOBS, "8301", {"status": {"processes": {
            "1": {"node": to, "targetNode": None, "migrations": 1}, "0": {"phase": "Frozen"}}}}, NS, status=True)
        await k8s.patch(emulator.JOBS, "8301", {"spec": {"processes": {"0": {"frozen": False}}}}, NS)
        continued = await k8s.until(lambda: "frozen" not in processes(k8s, "8301")["0"] and processes(k8s, "8301"))
        job_status = status(k8s, "8301")
    assert (asked["1"]["targetNode"], asked["1"]["observedMigrationSerial"]) == (to, 1)
    assert "targetNode" not in asked["0"] and "targetNode" not in status(k8s, "8301")
    assert frozen["0"]["frozen"] == "Manual" and "frozen" not in frozen["1"]
    assert moved[0]["message"] == f"migrate process 1 to {to} (requested)"
    assert froze[0]["message"] == "freeze process 0 (requested)"
    assert (continued["1"]["node"], continued["1"].get("targetNode")) == (to, None)
    assert "frozen" not in job_status

