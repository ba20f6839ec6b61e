"""The documented command, `kopf run --all-namespaces --peering=mosix operator/main.py`, through Kopf's CLI.

Kopf's runner has its own thread and loop, so this one runs in real time; the emulator stays in ours.
"""

from __future__ import annotations

import asyncio

import kopf.testing

from tests.integration.operator import conftest, emulator


async def test_the_documented_command_runs_the_operator(cluster: emulator.Cluster) -> None:
    main = emulator.ROOT / "operator" / "main.py"
    runner = kopf.testing.KopfRunner(["run", "--all-namespaces", "--peering=mosix", str(main)], timeout=60)
    runner.__enter__()  # not `with`: leaving blocks until Kopf stops, and Kopf needs this loop to stop
    try:
        made = await cluster.until(lambda: (cluster.get(emulator.CLUSTERS, "default") or {}).get("status"), 60)
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
    assert made["leader"] == conftest.IDENTITY
    assert runner.exit_code == 0
