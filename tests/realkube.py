"""Real Kubernetes for the tests: the project's own build, started by the shared start scripts.

Session fixtures (loaded by tests/conftest.py):

``kube_apiserver -> Kube``
    etcd + kube-apiserver on 127.0.0.1 (``shared/k8s/apiserver up DIR``) from the project's build
    (``hack/k8s/build.sh``, run first if its binaries are missing), on free ports, so several test
    sessions may run at once; stopped (``apiserver down DIR``) at the end, failures included.
    With ``MOSIX_E2E_KUBECONFIG`` set, that server is used instead and nothing is started.
``kube_cluster -> Kube``
    a single-node cluster where pods run (``shared/k8s/cluster up DIR``; root, one per machine),
    stopped with ``cluster down DIR --purge``; or the cluster named by ``MOSIX_E2E_CLUSTER_KUBECONFIG``.
``kube_crds -> Kube``
    ``kube_apiserver`` with the CRDs of ``crds/`` applied and Established.

Where the shared scripts, the build or a prerequisite is missing, tests using these fixtures are
skipped with a reason naming it; with ``CI`` set in the environment they fail instead.
``shared/`` is ``$MOSIX_SHARED``, else the ``shared`` folder beside the repository.
The build runs before the first test (not inside one, so per-test timeouts do not cut it short).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "k8s" / "build.sh"
CRDS = REPO / "crds"
SERVER_BINARIES = ("kube-apiserver", "kubectl")
CLUSTER_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
CLUSTER_TOOLS = ("containerd", "ctr", "iptables", "ip", "xz", "openssl", "curl")
CLUSTER_LOCK = pathlib.Path("/tmp/mosix-test-cluster.lock")
CLUSTER_ETCD_PORT = 17379  # fixed in shared/k8s/cluster; in use means a cluster is up already
CLUSTER_BRIDGE = "kt0"  # fixed in shared/k8s/cluster
FIXTURES = ("kube_apiserver", "kube_cluster", "kube_crds")

_kube_bin_key = pytest.StashKey["pathlib.Path | Unavailable"]()
_tier_key = pytest.StashKey["Tier"]()


class Unavailable(Exception):
    """Real Kubernetes cannot be had here; the message names what is missing."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl failed; str() carries its command line and stderr."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {(self.stderr or '').strip()}"


@dataclasses.dataclass(frozen=True)
class Kube:
    """A reachable Kubernetes API server and the kubectl to talk to it."""

    kubeconfig: pathlib.Path
    kube_bin: pathlib.Path  # folder holding kubectl (and, when built here, the server binaries)
    dir: pathlib.Path | None = None  # the start script's folder (logs, tester.token), if started here

    @property
    def tester_token(self) -> str | None:
        """Bearer token of the unprivileged user ``tester`` (only for servers started here)."""
        if self.dir is None or not (self.dir / "tester.token").is_file():
            return None
        return (self.dir / "tester.token").read_text().strip()

    def env(self) -> dict[str, str]:
        """Environment for a process that talks to this server: KUBECONFIG, and kubectl first on PATH."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                "PATH": f"{self.kube_bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = False,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Runs ``kubectl --kubeconfig … ARGS``; with check, a non-zero exit raises KubectlError."""
        cache = ["--cache-dir", str(self.dir / "kubectl-cache")] if self.dir is not None else []
        cmd = [str(self.kube_bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *cache, *args]
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, cmd, done.stdout, done.stderr)
        return done


@dataclasses.dataclass
class Tier:
    """What the terminal summary says about the tests that ran on real Kubernetes."""

    nodeids: set[str] = dataclasses.field(default_factory=set)
    outcomes: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


def unavailable(reason: str) -> NoReturn:
    """Skips the test, or fails it when CI is set: nothing is silently skipped in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"real Kubernetes unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def shared_k8s() -> pathlib.Path:
    """The folder of the shared start scripts (apiserver, cluster)."""
    shared = pathlib.Path(os.environ.get("MOSIX_SHARED") or REPO.parent / "shared")
    folder = shared / "k8s"
    if not (folder / "apiserver").is_file():
        raise Unavailable(f"no start scripts at {folder} (set MOSIX_SHARED to the shared folder, "
                          "or MOSIX_E2E_KUBECONFIG to a running API server)")
    return folder


def build_dir() -> pathlib.Path:
    """Where hack/k8s/build.sh puts (or would put) the binaries."""
    out = subprocess.run([str(BUILD_SCRIPT), "--print-dir"], capture_output=True, text=True, check=True)
    return pathlib.Path(out.stdout.strip())


def running_build() -> int | None:
    """The pid of a `go build` of k8s.io/kubernetes running on this machine, if any."""
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        go_build = len(argv) > 1 and (argv[0] == b"go" or argv[0].endswith(b"/go")) and argv[1] == b"build"
        if go_build and any(a.startswith(b"k8s.io/kubernetes/cmd/") for a in argv):
            return int(proc.name)
    return None


def ensure_build(say: Callable[[str], None] | None = None) -> pathlib.Path:
    """The folder of the project's Kubernetes binaries, built first when missing (under a lock)."""
    if os.environ.get("KUBE_BIN"):
        folder = pathlib.Path(os.environ["KUBE_BIN"])
        missing = [b for b in SERVER_BINARIES if not (folder / b).is_file()]
        if missing:
            raise Unavailable(f"KUBE_BIN={folder} lacks {', '.join(missing)}")
        return folder
    if not BUILD_SCRIPT.is_file():
        raise Unavailable(f"no {BUILD_SCRIPT}")
    folder = build_dir()
    if all((folder / b).is_file() for b in CLUSTER_BINARIES):
        return folder
    if shutil.which("go") is None:
        raise Unavailable(f"no Kubernetes binaries in {folder} and no go to build them (hack/k8s/build.sh)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second session waits, then finds it done
        running = running_build()
        if running is not None:  # started by hand or by setup, outside the lock: wait for it, do not race it
            if say is not None:
                say(f"realkube: waiting for the Kubernetes build already running (pid {running})")
            while running_build() is not None:
                time.sleep(5)
            if all((folder / b).is_file() for b in CLUSTER_BINARIES):
                return folder
        if say is not None:
            say(f"realkube: building Kubernetes: {BUILD_SCRIPT.relative_to(REPO)} (cold: minutes)")
        start = time.monotonic()
        done = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Unavailable(f"hack/k8s/build.sh failed: {done.stderr.strip()[-2000:]}")
        if say is not None:
            say(f"realkube: hack/k8s/build.sh took {time.monotonic() - start:.1f} s")
    return pathlib.Path(done.stdout.strip().splitlines()[-1])


def kubectl_bin_for(kubeconfig: str) -> pathlib.Path:
    """kubectl for a server given from outside: KUBE_BIN, else the project's build, else PATH."""
    for folder in (os.environ.get("KUBE_BIN"), str(build_dir()) if BUILD_SCRIPT.is_file() else None):
        if folder and (pathlib.Path(folder) / "kubectl").is_file():
            return pathlib.Path(folder)
    found = shutil.which("kubectl")
    if found is None:
        raise Unavailable(f"no kubectl to talk to {kubeconfig} (set KUBE_BIN or put kubectl on PATH)")
    return pathlib.Path(found).parent


def free_ports(n: int) -> list[int]:
    """n distinct ports on 127.0.0.1 that were free a moment ago."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: pathlib.Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _script(script: pathlib.Path, *args: str, env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While a server runs, SIGTERM (a CI job cancelled, `timeout`) unwinds like Ctrl-C, so it is stopped."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # someone else handles it already
        yield
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def apiserver(folder: pathlib.Path, kube_bin: pathlib.Path, scripts: pathlib.Path,
              tier: Tier | None = None) -> Iterator[Kube]:
    """etcd + kube-apiserver in folder on free ports, stopped on exit whatever happened."""
    script = scripts / "apiserver"
    last = ""
    for attempt in range(3):  # a port taken between choosing and binding: try others
        api, etcd, peer = free_ports(3)
        env = {**os.environ, "KUBE_BIN": str(kube_bin), "API_PORT": str(api),
               "ETCD_PORT": str(etcd), "ETCD_PEER_PORT": str(peer)}
        start = time.monotonic()
        try:
            up = _script(script, "up", str(folder), env=env, timeout=180)
        except subprocess.TimeoutExpired:
            up = subprocess.CompletedProcess([str(script)], 1, "", "apiserver up timed out after 180 s")
        if up.returncode == 0:
            if tier is not None:
                tier.notes.append(f"kube-apiserver on 127.0.0.1:{api} up in {time.monotonic() - start:.1f} s "
                                  f"(KUBE_BIN={kube_bin})")
            try:
                with sigterm_interrupts():
                    yield Kube(kubeconfig=folder / "kubeconfig", kube_bin=kube_bin, dir=folder)
            finally:
                _script(script, "down", str(folder), env=env, timeout=60)
                shutil.rmtree(folder / "etcd-data", ignore_errors=True)
            return
        last = (f"attempt {attempt + 1}: {up.stderr.strip()}"
                f"\n--- apiserver.log\n{_tail(folder / 'apiserver.log')}"
                f"\n--- etcd.log\n{_tail(folder / 'etcd.log', 5)}")
        _script(script, "down", str(folder), env=env, timeout=60)
    pytest.fail(f"{script} up {folder} failed:\n{last}", pytrace=False)


@contextlib.contextmanager
def cluster(folder: pathlib.Path, kube_bin: pathlib.Path, scripts: pathlib.Path,
            tier: Tier | None = None) -> Iterator[Kube]:
    """The single-node cluster in folder, torn down (pods, bridge, iptables rules, folder) on exit."""
    script = scripts / "cluster"
    env = {**os.environ, "KUBE_BIN": str(kube_bin)}
    start = time.monotonic()
    try:
        if pathlib.Path(f"/sys/class/net/{CLUSTER_BRIDGE}").exists():
            # Left by a cluster that was killed (the caller holds the lock and its etcd port is free).
            # `up` would trip on the bridge's address (grep -q under pipefail), so clear it first.
            _script(script, "down", str(folder), env=env, timeout=180)
            if tier is not None:
                tier.notes.append(f"cleared a killed cluster's leftovers (bridge {CLUSTER_BRIDGE}) before up")
        try:
            up = _script(script, "up", str(folder), env=env, timeout=240)
        except subprocess.TimeoutExpired:
            up = subprocess.CompletedProcess([str(script)], 1, "", "cluster up timed out after 240 s")
        if up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{_tail(p, 8)}" for p in sorted((folder / "logs").glob("*.log")))
            pytest.fail(f"{script} up {folder} failed: {up.stderr.strip()}\n{logs}", pytrace=False)
        if tier is not None:
            tier.notes.append(f"single-node cluster up in {time.monotonic() - start:.1f} s "
                              f"(KUBE_BIN={kube_bin})")
        with sigterm_interrupts():
            yield Kube(kubeconfig=folder / "kubeconfig", kube_bin=kube_bin, dir=folder)
    finally:
        _script(script, "down", str(folder), "--purge", env=env, timeout=180)


def cgroup_v1() -> bool:
    """Whether this host runs cgroup v1 (or the hybrid layout): no unified hierarchy at /sys/fs/cgroup."""
    return not pathlib.Path("/sys/fs/cgroup/cgroup.controllers").is_file()


def shimmed(kube_bin: pathlib.Path, folder: pathlib.Path, *, cgroup_v1: bool) -> pathlib.Path:
    """A KUBE_BIN in folder for shared/k8s/cluster, written for Kubernetes 1.34, to start 1.37 with:

    - kube-controller-manager: the script disables three cloud controllers by names 1.35+ no longer
      knows, and the controller-manager then exits at start; their code is gone, so `--controllers=*`;
    - kubelet, on cgroup v1: since 1.35 it refuses cgroup v1 unless told `--fail-cgroupv1=false`
      (a flag on the command line overrides its config file).

    The shims exec the real binaries, so the script's pid files name them. The rest is linked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shims = {"kube-controller-manager": 'for a do shift; case "$a" in --controllers=*) set -- "$@" '
                                        '--controllers=\'*\';; *) set -- "$@" "$a";; esac; done'}
    if cgroup_v1:
        shims["kubelet"] = "set -- --fail-cgroupv1=false \"$@\""
    for binary in kube_bin.iterdir():
        if binary.name not in shims and not (folder / binary.name).exists():
            (folder / binary.name).symlink_to(binary.resolve())
    for name, args in shims.items():
        shim = folder / name
        shim.write_text(f'#!/bin/sh\n{args}\nexec "{(kube_bin / name).resolve()}" "$@"\n')
        shim.chmod(0o755)
    return folder


def cluster_prerequisites(kube_bin: pathlib.Path) -> None:
    """Raises Unavailable naming the first thing shared/k8s/cluster would miss."""
    if os.geteuid() != 0:
        raise Unavailable("the single-node cluster needs root (bridge, iptables, containerd)")
    missing = [b for b in CLUSTER_BINARIES if not (kube_bin / b).is_file()]
    missing += [t for t in (*CLUSTER_TOOLS, "etcd")
                if shutil.which(t) is None and not (kube_bin / t).is_file()]
    if not pathlib.Path("/usr/lib/cni/bridge").is_file():
        missing.append("/usr/lib/cni/bridge (containernetworking-plugins)")
    if missing:
        raise Unavailable(f"the single-node cluster needs {', '.join(missing)}")


def _kube_bin(config: pytest.Config) -> pathlib.Path:
    found = config.stash.get(_kube_bin_key, None)
    if found is None:
        try:
            found = ensure_build()
        except Unavailable as missing:
            found = missing
        config.stash[_kube_bin_key] = found
    if isinstance(found, Unavailable):
        raise found
    return found


# --- hooks -----------------------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realcluster: needs the real single-node Kubernetes cluster (root)")
    config.stash[_tier_key] = Tier()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds Kubernetes before the first test when a selected test needs it (outside per-test timeouts)."""
    tier = session.config.stash[_tier_key]
    uses = {item.nodeid: set(getattr(item, "fixturenames", ())) & set(FIXTURES) for item in session.items}
    tier.nodeids = {nodeid for nodeid, fixtures in uses.items() if fixtures}
    needs_server = any(f & {"kube_apiserver", "kube_crds"} for f in uses.values())
    needs_cluster = any("kube_cluster" in f for f in uses.values())
    if session.config.option.collectonly or not (
            (needs_server and not os.environ.get("MOSIX_E2E_KUBECONFIG"))
            or (needs_cluster and not os.environ.get("MOSIX_E2E_CLUSTER_KUBECONFIG"))):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    try:
        session.config.stash[_kube_bin_key] = ensure_build(say)
    except Unavailable as missing:
        session.config.stash[_kube_bin_key] = missing


@pytest.hookimpl(tryfirst=True)  # a firstresult hook: be asked before the one that answers
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> None:
    """Counts the outcomes of the tests that use real Kubernetes (for the terminal summary)."""
    tier = config.stash.get(_tier_key, None)
    if tier is None or report.nodeid not in tier.nodeids:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        tier.outcomes[report.nodeid] = report.outcome
    elif report.when == "teardown" and report.outcome == "failed":
        tier.outcomes[report.nodeid] = "failed"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    tier = config.stash.get(_tier_key, None)
    if tier is None or not tier.outcomes:
        return
    counts: dict[str, int] = {}
    for outcome in tier.outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    where = os.environ.get("MOSIX_E2E_KUBECONFIG") or "servers started here"
    terminalreporter.write_sep("-", "real Kubernetes tier")
    tests = f"{len(tier.outcomes)} test{'s' if len(tier.outcomes) != 1 else ''}"
    terminalreporter.write_line(f"{tests} ran against real Kubernetes ({where}): "
                                + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    for note in tier.notes:
        terminalreporter.write_line(note)


# --- fixtures --------------------------------------------------------------------------------------

def _given(variable: str) -> Kube | None:
    """The Kubernetes that environment variable names by its kubeconfig, or None when it is unset."""
    given = os.environ.get(variable)
    if not given:
        return None
    try:
        return Kube(kubeconfig=pathlib.Path(given), kube_bin=kubectl_bin_for(given))
    except Unavailable as missing:
        unavailable(str(missing))

@pytest.fixture(scope="session")
def kube_apiserver(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A real kube-apiserver (started here, or MOSIX_E2E_KUBECONFIG's)."""
    given = _given("MOSIX_E2E_KUBECONFIG")
    if given is not None:
        yield given
        return
    try:
        scripts = shared_k8s()
        kube_bin = _kube_bin(request.config)
    except Unavailable as missing:
        unavailable(str(missing))
        return
    with apiserver(tmp_path_factory.mktemp("apiserver"), kube_bin, scripts,
                   request.config.stash[_tier_key]) as kube:
        yield kube


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """A real single-node cluster where pods run (started here, or MOSIX_E2E_CLUSTER_KUBECONFIG's)."""
    given = _given("MOSIX_E2E_CLUSTER_KUBECONFIG")
    if given is not None:
        yield given
        return
    try:
        scripts = shared_k8s()
        kube_bin = _kube_bin(request.config)
        cluster_prerequisites(kube_bin)
    except Unavailable as missing:
        unavailable(str(missing))
        return
    with open(CLUSTER_LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            unavailable(f"another test session holds {CLUSTER_LOCK}: one single-node cluster per machine")
            return
        if port_in_use(CLUSTER_ETCD_PORT):
            unavailable(f"127.0.0.1:{CLUSTER_ETCD_PORT} is taken: a single-node cluster is already up "
                        "(shared/k8s/cluster down)")
            return
        kube_bin = shimmed(kube_bin, tmp_path_factory.mktemp("kube-bin"), cgroup_v1=cgroup_v1())
        with cluster(tmp_path_factory.mktemp("cluster"), kube_bin, scripts,
                     request.config.stash[_tier_key]) as kube:
            yield kube


@pytest.fixture(scope="session")
def kube_crds(kube_apiserver: Kube) -> Kube:
    """kube_apiserver with the CRDs of crds/ applied (server-side) and Established."""
    kube_apiserver.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS), check=True)
    names = [f"crd/{yaml.safe_load(p.read_text())['metadata']['name']}" for p in sorted(CRDS.glob("*.yaml"))]
    kube_apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, check=True)
    return kube_apiserver
