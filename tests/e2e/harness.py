"""One MOSIX cluster for a scenario: the local cluster by default, or a real Kubernetes API server.

With MOSIX_E2E_KUBECONFIG set, scenarios run unchanged against that server: the CRDs of crds/ are
applied, each scenario gets its own namespace, and the control plane is the Kopf operator started
as a local process. Otherwise the control plane is the local cluster's loop over SQLite. The
commands are run as the user runs them: the installed entry points, in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from mosix.agent import checkpoints, tls
from mosix.api import cluster as mcluster
from mosix.api import job, meta, node
from mosix.client import client, kube, local, store
from tests import ports

# What every scenario that runs jobs needs (its pytestmark, or the start of it).
RUNS_JOBS = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runc and CRIU run the jobs"),
    pytest.mark.skipif(shutil.which("runc") is None or shutil.which("criu") is None,
                       reason="needs runc and criu (hack/setup.sh installs them)"),
]

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


class Cluster:
    """Where the commands point, and the control plane's process."""

    def __init__(self, workdir: pathlib.Path, kubeconfig: str | None) -> None:
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.namespace = f"e2e-{uuid.uuid4().hex[:8]}" if kubeconfig else "default"
        self.control: subprocess.Popen[bytes] | None = None
        self.agents: dict[int, subprocess.Popen[bytes]] = {}
        self.ports: dict[int, tuple[int, int]] = {}  # node number: its agent and user API ports, kept across restarts
        self.env = {**os.environ, "MOSIX_STATE": str(workdir / "state"), "MOSIX_NODE": "node1",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.ca = workdir / "ca"
        tls.make_ca(checkpoints.secure_dir(self.ca))
        if kubeconfig:
            self.env |= {"MOSIX_KUBECONFIG": kubeconfig, "MOSIX_NAMESPACE": self.namespace}
        else:
            self.env.pop("MOSIX_KUBECONFIG", None)
            local.LocalStore(workdir / "state").init()

    @property
    def kind(self) -> str:
        return "kube" if self.kubeconfig else "local"

    def api(self) -> client.Client:
        if self.kubeconfig:
            return client.Client(kube.KubeStore(self.kubeconfig, namespace=self.namespace))
        return client.Client(local.LocalStore(self.workdir / "state"))

    def run(self, *argv: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Runs a MOSIX command (its installed entry point) as a user would (`env`: with these variables changed)."""
        done = subprocess.run(list(argv), env=self.env | (env or {}), capture_output=True, text=True, timeout=120,
                              check=False, cwd=self.workdir, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done

    def submit(self, *argv: str) -> str:
        """mosrun --detach …: the new job's id."""
        return self.run("mosrun", "--detach", *argv).stdout.strip()

    def mosrun_fed(self, *argv: str, first: str,
                   output: int = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], str]:
        """Foreground `mosrun -i ARGV` (the only job), given `first` as the start of its input: the process,
        its stdin left open for more, and the job's name once the job exists. The caller ends the process."""
        mosrun = subprocess.Popen(["mosrun", "-i", *argv], env=self.env, cwd=self.workdir, stdin=subprocess.PIPE,
                                  stdout=output, stderr=output)
        try:
            assert mosrun.stdin is not None
            mosrun.stdin.write(first.encode())
            mosrun.stdin.flush()
            self.wait_for("the job", lambda: len(self.api().jobs()) == 1)
        except BaseException:
            mosrun.kill()
            mosrun.wait()
            raise
        return mosrun, self.api().jobs()[0].name

    def start_control_plane(self) -> None:
        log = (self.workdir / "control.log").open("ab")
        if self.kubeconfig:
            argv = [str(BIN / "kopf"), "run", str(REPO / "operator" / "main.py"), "--all-namespaces",
                    "--standalone", "--liveness=http://127.0.0.1:0/healthz"]
            env = {**self.env, "KUBECONFIG": self.kubeconfig, "MOSIX_METRICS_PORT": "0"}
        else:
            argv = [sys.executable, "-m", "mosix.local.loop", "--state", str(self.workdir / "state"),
                    "--interval", "0.3", "--metrics-port", "0"]
            env = self.env
        self.control = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def stop_control_plane(self) -> None:
        if self.control is None:
            return
        os.killpg(self.control.pid, signal.SIGTERM)
        try:
            self.control.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.control.pid, signal.SIGKILL)
            self.control.wait()
        self.control = None

    def start_agent(self, number: int) -> None:
        """Node `number`'s agent on 127.0.0.N, pointed at this cluster's store."""
        # All agents of a test share this machine's disk, so their checkpoints are readable everywhere.
        where = ["--kubeconfig", self.kubeconfig] if self.kubeconfig else ["--local-store", str(self.workdir / "state")]
        where += ["--shared-checkpoints", "--tls-dir", str(self.workdir / "state" / "nodes" / f"node{number}" / "tls"),
                  "--issue-from", str(self.ca)]
        address = f"127.0.0.{number}"
        # Ports the kernel picks, not the agent's defaults: another cluster may run on this machine at the
        # same time (hack/test.sh runs the local and the real-API-server passes side by side).
        port, user_port = self.ports.setdefault(number, (ports.free_port(address), ports.free_port(address)))
        argv = [sys.executable, "-m", "mosix.agent", "--node-name", f"node{number}", "--node-number", str(number),
                "--address", address, "--port", str(port), "--user-port", str(user_port),
                "--metrics-port", "0", "--cpus", "1", "--speed", "1000",
                "--state-dir", str(self.workdir / "state" / "nodes" / f"node{number}"), *where]
        log = (self.workdir / f"agent-{number}.log").open("ab")
        self.agents[number] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)

    def kill_agent(self, number: int, sig: int = signal.SIGKILL) -> None:
        proc = self.agents.pop(number)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def agent_process(self, number: int) -> int | None:
        """The pid of node `number`'s agent itself: the child of its keeper (the process we started) that
        runs mosix.agent (the keeper's other children are job containers it adopted)."""
        keeper = self.agents[number].pid
        for child in pathlib.Path(f"/proc/{keeper}/task/{keeper}/children").read_text().split():
            try:
                if b"mosix.agent" in pathlib.Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
            except OSError:
                continue
        return None

    def crash_agent(self, number: int) -> None:
        """kill -9 node `number`'s agent (not its keeper, which starts it again), as a crash would;
        returns once the new agent process runs."""
        old = self.agent_process(number)
        assert old is not None, f"no agent process under node{number}'s keeper"
        os.kill(old, signal.SIGKILL)
        self.wait_for(f"node{number}'s keeper to start its agent again",
                      lambda: self.agent_process(number) not in (None, old))

    def up(self, nodes: int) -> None:
        """Agents on nodes 1..N and the control plane; returns when every node has reported."""
        for number in range(1, nodes + 1):
            self.start_agent(number)
        self.start_control_plane()
        names = {f"node{n}" for n in range(1, nodes + 1)}
        self.wait_for(f"{nodes} nodes to report",
                      lambda: names <= {n.name for n in self.api().nodes() if n.status.heartbeat})

    def down(self) -> None:
        """Stops everything this cluster started (agents kill their containers on the way out), and what
        a killed agent left behind: its containers and overlay mounts."""
        for number in list(self.agents):
            self.kill_agent(number, signal.SIGTERM)
        self.stop_control_plane()
        for root in self.workdir.glob("state/nodes/*/runc"):
            listed = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True,
                                    check=False)
            for container in listed.stdout.split():
                subprocess.run(["runc", "--root", str(root), "delete", "-f", container], capture_output=True,
                               check=False)
        mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(str(self.workdir))), reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        if self.kubeconfig:  # the queue is cluster-wide: leave nothing behind for the next scenario
            api = self.api()
            for j in api.jobs():
                api.store.patch(job.MosixJob, j.name, {"metadata": {"finalizers": None}})
                api.delete_job(j.name)
            for n in api.nodes():
                if n.name.startswith("node"):
                    api.store.delete(node.MosixNode, n.name)

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Polls until predicate holds; fails naming what was awaited and the control plane's log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.control is not None and self.control.poll() is not None:
                break
            time.sleep(0.2)
        logs = "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}"
                       for p in sorted(self.workdir.glob("*.log")))
        raise AssertionError(f"timed out waiting for {what}; logs:{logs}")

    def status(self, name: str) -> job.MosixJobStatus:
        return self.api().get_job(name).status


NO_MOVE_IS_WORTH_IT = 100.0  # the largest minGain the schema allows (a 100-fold speed-up)


@contextlib.contextmanager
def no_load_balancing(c: Cluster) -> Iterator[None]:
    """The balancer's minimum gain set out of reach, put back afterwards: on a shared, noisy machine a
    node's measured load can make a load move look worth it, and a scenario about another cause of
    moves (I/O, a request) wants that one alone (bringing a job home for its I/O ignores this knob)."""
    api = c.api()
    try:
        old = mcluster.MosixCluster.model_validate(api.store.get(mcluster.MosixCluster, mcluster.DEFAULT_NAME))
    except store.NotFound:
        old = None
    if old is None:
        made = mcluster.MosixCluster(metadata=meta.ObjectMeta(name=mcluster.DEFAULT_NAME))
        made.spec.balancing.min_gain = NO_MOVE_IS_WORTH_IT
        api.store.create(mcluster.MosixCluster, made.wire())
    else:
        api.store.patch(mcluster.MosixCluster, mcluster.DEFAULT_NAME,
                        {"spec": {"balancing": {"minGain": NO_MOVE_IS_WORTH_IT}}})
    try:
        yield
    finally:
        if old is None:
            api.store.delete(mcluster.MosixCluster, mcluster.DEFAULT_NAME)
        else:
            gain = old.spec.balancing.min_gain
            api.store.patch(mcluster.MosixCluster, mcluster.DEFAULT_NAME, {"spec": {"balancing": {"minGain": gain}}})
