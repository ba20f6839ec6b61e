"""Fixtures of the packaging tests: the real helm, and a Docker engine (started here when none runs).

``helm -> Helm``
    the helm that hack/setup.sh extracts (``$MOSIX_HELM``, else ``$MOSIX_CACHE``/``~/.cache/mosix``/bin/helm,
    else helm on PATH).
``docker_client -> docker.DockerClient`` (session)
    the engine at ``$DOCKER_HOST`` or /var/run/docker.sock; when none answers and dockerd is installed, one is
    started for the session (``dockerd --exec-opt native.cgroupdriver=cgroupfs --storage-driver overlay2``, the
    default data root so its build cache serves later sessions) and stopped at its end, with its containerd.
    A socket file nobody listens on (left by a killed dockerd) is removed first; an engine that takes
    connections but is still starting is waited for.

Where a tool is missing, the tests that need it are skipped with a reason naming it; with ``CI`` set in the
environment they fail instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import NoReturn

import docker
import docker.errors
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mosix"
DOCKER_SOCKET = pathlib.Path("/var/run/docker.sock")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs a Docker engine (started by the session if installed)")


def unavailable(reason: str) -> NoReturn:
    """Skips the test, or fails it when CI is set: nothing is silently skipped in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class Helm:
    """The real helm binary."""

    path: pathlib.Path

    def run(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.path), *args], capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done


def find_helm() -> pathlib.Path | None:
    if os.environ.get("MOSIX_HELM"):
        return pathlib.Path(os.environ["MOSIX_HELM"])
    cache = pathlib.Path(os.environ.get("MOSIX_CACHE")
                         or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "mosix")
    if (cache / "bin" / "helm").is_file():
        return cache / "bin" / "helm"
    found = shutil.which("helm")
    return pathlib.Path(found) if found else None


@pytest.fixture(scope="session")
def helm() -> Helm:
    path = find_helm()
    if path is None or not os.access(path, os.X_OK):
        unavailable("no helm (hack/setup.sh extracts it to ~/.cache/mosix/bin/helm; or set MOSIX_HELM)")
    assert path is not None
    return Helm(path)


def _ping(timeout: float = 5) -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException:
        return None
    return docker.from_env(timeout=900)


def _listening(path: pathlib.Path) -> bool:
    """Whether a process accepts connections on the Unix socket at path (a killed dockerd leaves the file)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
    return True


def _answering_within(seconds: float, starting: Callable[[], bool] = lambda: True) -> docker.DockerClient | None:
    """The engine once it answers (a dockerd that is still starting), or None after seconds or once
    `starting` says it never will (the dockerd exited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and starting():
        client = _ping()
        if client is not None:
            return client
        time.sleep(0.5)
    return None


@contextlib.contextmanager
def started_dockerd(folder: pathlib.Path) -> Iterator[docker.DockerClient]:
    """dockerd on the default socket for the duration; stopped (with its containerd) on exit, whatever happened."""
    log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        ["dockerd", "--exec-opt", "native.cgroupdriver=cgroupfs", "--storage-driver", "overlay2",
         "--host", f"unix://{DOCKER_SOCKET}", "--pidfile", str(folder / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        client = _answering_within(60, lambda: proc.poll() is None)
        if client is None:
            if proc.poll() is not None:
                tail = (folder / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
                pytest.fail("dockerd exited at start:\n" + "\n".join(tail), pytrace=False)
            pytest.fail("dockerd did not answer within 60 s", pytrace=False)
        yield client
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)  # dockerd stops its own containerd and containers' shims
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[docker.DockerClient]:
    """A Docker engine: the running one, or one started for this session."""
    client = _ping()
    if client is not None:
        yield client
        client.close()
        return
    if os.environ.get("DOCKER_HOST"):
        unavailable(f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}")
    if shutil.which("dockerd") is None:
        unavailable(f"no Docker engine: nothing answers at {DOCKER_SOCKET} and no dockerd to start "
                    "(hack/setup.sh installs docker.io from trixie)")
    if os.geteuid() != 0:
        unavailable(f"no Docker engine at {DOCKER_SOCKET}, and starting dockerd needs root")
    if DOCKER_SOCKET.exists():
        if _listening(DOCKER_SOCKET):
            client = _answering_within(60)
            if client is None:
                unavailable(f"{DOCKER_SOCKET} takes connections but its engine did not answer within 60 s: "
                            "another dockerd is stuck (stop it)")
            yield client
            client.close()
            return
        DOCKER_SOCKET.unlink()  # left by a dockerd that was killed: nothing listens on it
    with started_dockerd(tmp_path_factory.mktemp("dockerd")) as started:
        yield started
