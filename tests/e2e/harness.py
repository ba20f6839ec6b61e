"""One MOSIX cluster for a scenario: the local cluster by default, or a real Kubernetes API server.

With MOSIX_E2E_KUBECONFIG set, scenarios run unchanged against that server: the CRDs of crds/ are
applied, each scenario gets its own namespace, and the control plane is the Kopf operator started
as a local process. Otherwise the control plane is the local cluster's loop over SQLite. The
commands are run as the user runs them: the installed entry points, in a subprocess.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

from mosix.api import job
from mosix.client import client, kube, local

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


class Cluster:
    """Where the commands point, and the control plane's process."""

    def __init__(self, workdir: pathlib.Path, kubeconfig: str | None) -> None:
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.namespace = f"e2e-{uuid.uuid4().hex[:8]}" if kubeconfig else "default"
        self.control: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "MOSIX_STATE": str(workdir / "state"), "MOSIX_NODE": "node1",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
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

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs a MOSIX command (its installed entry point) as a user would."""
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=120, check=False,
                              cwd=self.workdir, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done

    def submit(self, *argv: str) -> str:
        """mosrun --detach …: the new job's id."""
        return self.run("mosrun", "--detach", *argv).stdout.strip()

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

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Polls until predicate holds; fails naming what was awaited and the control plane's log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.control is not None and self.control.poll() is not None:
                break
            time.sleep(0.2)
        tail = (self.workdir / "control.log").read_text(errors="replace")[-3000:] \
            if (self.workdir / "control.log").exists() else ""
        raise AssertionError(f"timed out waiting for {what}; control plane log:\n{tail}")

    def status(self, name: str) -> job.MosixJobStatus:
        return self.api().get_job(name).status
