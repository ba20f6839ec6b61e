"""The node status sampler on this machine's real /proc: a busy child process shows up as load."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from mosix.agent import nodestatus
from mosix.api import node


def test_smoothing_moves_towards_the_samples() -> None:
    assert abs(nodestatus.smoothed(0.0, 2.0, 5.0) - 2.0 * (1 - math.exp(-1))) < 1e-9
    value = 0.0
    for _ in range(50):
        value = nodestatus.smoothed(value, 2.0, 1.0)
    assert 1.99 < value <= 2.0
    assert nodestatus.smoothed(3.0, 0.0, 0.0) == 3.0


def test_a_busy_process_tree_is_load_and_memory_is_the_machines() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import subprocess, sys\n"
                             "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
                             "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        while len(nodestatus.descendants(busy.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(nodestatus.descendants(busy.pid)) == 2
        sampler = nodestatus.Sampler(cpus=2, speed=1000)
        spec = node.MosixNodeSpec(number=1, address="127.0.0.1")
        here = nodestatus.JobsHere(pids=[busy.pid], frozen=1, guests=0)
        peaks = []
        for _ in range(20):
            peaks.append(sampler.sample(spec, here, queue_up=True).load)
            time.sleep(0.05)
        assert max(peaks) >= 1.0  # two spinning processes on a shared machine: at least one runs at a time
        status = sampler.sample(spec, here, queue_up=False)
        assert status.procs == 1 and status.frozen == 1 and status.accept
        assert status.daemons.queue == node.DaemonState.DOWN
        assert 0 < status.memory.available_mb <= status.memory.total_mb
        assert status.heartbeat is not None
    finally:
        for pid in reversed(nodestatus.descendants(busy.pid)):
            os.kill(pid, 9)
        busy.wait()


def test_blocked_node_does_not_accept() -> None:
    sampler = nodestatus.Sampler(cpus=1, speed=1)
    status = sampler.sample(node.MosixNodeSpec(number=2, address="127.0.0.2", block=True),
                            nodestatus.JobsHere(pids=[], frozen=0, guests=0), queue_up=True)
    assert (status.state, status.accept, status.load) == (node.NodeState.BLOCKED, False, 0.0)


def test_speed_is_measured() -> None:
    assert nodestatus.measure_speed(0.05) > 0
