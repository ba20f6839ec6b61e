"""`mosix up` / `mosix down`: start and stop the local cluster's processes, in the background.

Node N's agent listens on 127.0.0.N (as MOSIX numbers nodes); the control loop runs beside
them. Their pids and logs live in the state folder, so `down`, a second `up` and the tests
find them; the SQLite store keeps the jobs across restarts.

An agent's pid is its keeper's (`mosix.agent.keeper`): `python -m mosix.agent` becomes the keeper,
which runs the agent as its child, in its process group, and starts it again if it crashes. `down`
signals the whole group, so the agent stops (and its jobs with it), then its keeper.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

from mosix.agent import checkpoints, nodestatus, tls
from mosix.api import cluster, meta
from mosix.client import client, local, store

AGENT_PORT = 7341
AGENT_METRICS_PORT = 9341
LOOP_METRICS_PORT = 9340


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one local cluster keeps its things."""

    state: pathlib.Path

    @property
    def pids(self) -> pathlib.Path:
        return self.state / "pids"

    @property
    def logs(self) -> pathlib.Path:
        return self.state / "logs"

    @property
    def ca(self) -> pathlib.Path:
        """The cluster CA: every agent's certificate is issued from it, and only its holders are peers."""
        return self.state / "ca"

    def node_dir(self, number: int) -> pathlib.Path:
        return self.state / "nodes" / f"node{number}"


def node_name(number: int) -> str:
    return f"node{number}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = pathlib.Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def running(layout: Layout) -> dict[str, int]:
    """The cluster's processes that are alive, by name (agent-1, …, loop)."""
    found = {}
    for pidfile in sorted(layout.pids.glob("*.pid")) if layout.pids.is_dir() else []:
        pid = int(pidfile.read_text().strip() or 0)
        if pid and _alive(pid):
            found[pidfile.stem] = pid
        else:
            pidfile.unlink(missing_ok=True)
    return found


def _spawn(layout: Layout, name: str, argv: list[str]) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    with (layout.logs / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "MOSIX_STATE": str(layout.state)})
    (layout.pids / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def agent_argv(layout: Layout, number: int, cpus: int, speed: int) -> list[str]:
    return [sys.executable, "-m", "mosix.agent", "--node-name", node_name(number), "--node-number", str(number),
            "--cpus", str(cpus), "--speed", str(speed),
            "--address", f"127.0.0.{number}", "--port", str(AGENT_PORT),
            "--metrics-port", str(AGENT_METRICS_PORT), "--state-dir", str(layout.node_dir(number)),
            "--local-store", str(layout.state), "--shared-checkpoints",
            "--tls-dir", str(layout.node_dir(number) / "tls"), "--issue-from", str(layout.ca)]


def loop_argv(layout: Layout) -> list[str]:
    return [sys.executable, "-m", "mosix.local.loop", "--state", str(layout.state),
            "--metrics-port", str(LOOP_METRICS_PORT)]


def ensure_store(layout: Layout, nodes: int) -> client.Client:
    """The SQLite store, and a MosixCluster naming the local nodes (kept if it exists)."""
    backend = local.LocalStore(layout.state)
    backend.init()
    if not (layout.ca / "ca.key").exists():
        tls.make_ca(checkpoints.secure_dir(layout.ca))
    api = client.Client(backend)
    try:
        backend.get(cluster.MosixCluster, cluster.DEFAULT_NAME)
    except store.NotFound:
        conf = cluster.MosixCluster(
            metadata=meta.ObjectMeta(name=cluster.DEFAULT_NAME),
            spec=cluster.MosixClusterSpec(cluster_name="local", nodes=[cluster.NodeSpan(
                first=node_name(1), last=node_name(nodes) if nodes > 1 else None)]))
        backend.create(cluster.MosixCluster, conf.wire())
    return api


def wait_for_nodes(api: client.Client, names: list[str], timeout: float) -> list[str]:
    """Waits until every named node reported once; returns those that did not."""
    deadline = time.monotonic() + timeout
    missing = names
    while time.monotonic() < deadline:
        reported = {n.name for n in api.nodes() if n.status.heartbeat}
        missing = [n for n in names if n not in reported]
        if not missing:
            break
        time.sleep(0.3)
    return missing


def up(layout: Layout, nodes: int, timeout: float = 60.0, cpus: int = 1, speed: int | None = None) -> list[str]:
    """Starts what is not running yet; returns the nodes that failed to report in time.

    The nodes share this machine, so each reports `cpus` CPUs (default 1) and one speed measured
    here once: otherwise every agent would claim the whole machine and noise would rank them.
    """
    speed = speed or nodestatus.measure_speed(0.5)
    api = ensure_store(layout, nodes)
    alive = running(layout)
    for number in range(1, nodes + 1):
        if f"agent-{number}" not in alive:
            _spawn(layout, f"agent-{number}", agent_argv(layout, number, cpus, speed))
    if "loop" not in alive:
        _spawn(layout, "loop", loop_argv(layout))
    return wait_for_nodes(api, [node_name(n) for n in range(1, nodes + 1)], timeout)


def down(layout: Layout, timeout: float = 20.0) -> list[str]:
    """Stops every process of the cluster (TERM, then KILL); returns their names."""
    procs = running(layout)
    for pid in procs.values():
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in procs.values()):
        time.sleep(0.2)
    for pid in procs.values():
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    for name in procs:
        (layout.pids / f"{name}.pid").unlink(missing_ok=True)
    return sorted(procs)
