"""CRIU page streams between agents, authenticated with the cluster CA.

A migration's memory never touches the source's disk: the target runs a `criu page-server` for
that one migration (a `Sink`), writing into a root-only directory, and the source's dump streams
the pages into it. The stream is mutual TLS end to end (pagerelay: OpenSSL relays on both sides,
faster here than CRIU's own --tls); both ends present certificates of the cluster CA and check
the other's. The sink serves one connection: an unauthenticated one ends it with an error, and
its pages are then never restored. Post-copy uses CRIU's own --tls (its lazy-pages daemon dials
the source's page server); `tls_options` and `write_criu_config` are for that.

Every agent that sends or receives page streams is `enable`d with its TLS files and the address
its page servers listen on (the agent's own, 127.0.0.N locally).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import select
import shutil
import socket
import subprocess
import threading
import time
import weakref

from mosix.agent import checkpoints, containers, errors, pagerelay, runc, tls

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0  # for a page server to listen
PIPE_MAX_SIZE = 4194304  # the pipes CRIU's page server grows (F_SETPIPE_SZ)
PAGE_IMAGES = ("pagemap-", "pages-")  # what a page server writes: the memory, nothing else


@dataclasses.dataclass(frozen=True)
class Node:
    """What page streams need to know about an agent besides its manager."""

    identity: tls.Identity
    address: str


_nodes: weakref.WeakKeyDictionary[containers.Manager, Node] = weakref.WeakKeyDictionary()


def raise_pipe_max_size(path: pathlib.Path = pathlib.Path("/proc/sys/fs/pipe-max-size")) -> None:
    """Let CRIU's page server grow its pipes to 4 MiB: above fs.pipe-max-size that needs CAP_SYS_RESOURCE,
    which the agents lack here, and CRIU then fails mid-stream (ENVIRONMENT.md). The agent does it at start."""
    try:
        if int(path.read_text()) < PIPE_MAX_SIZE:
            path.write_text(str(PIPE_MAX_SIZE))
    except (OSError, ValueError) as e:
        log.warning("could not raise fs.pipe-max-size: %s (page streams and post-copy migration will fail)", e)


def enable(manager: containers.Manager, identity: tls.Identity, address: str) -> None:
    """Let this agent send and receive page streams: its TLS files and its page servers' address."""
    _nodes[manager] = Node(identity, address)


def node_of(manager: containers.Manager) -> Node:
    """The agent's page-stream settings; AgentError if it was never enabled."""
    node = _nodes.get(manager)
    if node is None:
        raise errors.AgentError("page streams are not enabled on this agent (pageserver.enable with its TLS files)")
    return node


def enabled(manager: containers.Manager) -> bool:
    """Whether `enable` was called for this agent."""
    return manager in _nodes


def tls_options(identity: tls.Identity) -> list[str]:
    """CRIU's TLS options for the cluster CA and this agent's certificate."""
    return ["--tls", "--tls-cacert", str(identity.ca), "--tls-cert", str(identity.cert), "--tls-key", str(identity.key)]


def write_criu_config(path: pathlib.Path, identity: tls.Identity) -> pathlib.Path:
    """A CRIU config file (0600) switching on TLS with these files, for a CRIU run by runc (runc has
    no flag for CRIU's --tls options; CRIU reads the file named in CRIU_CONFIG_FILE in RPC mode too),
    with the agent's other CRIU options (runc.NO_NETWORK_LOCK)."""
    text = f"tls\ntls-cacert {identity.ca}\ntls-cert {identity.cert}\ntls-key {identity.key}\n{runc.NO_NETWORK_LOCK}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def free_port(address: str) -> int:
    """A TCP port free on address now (the page server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


class Sink:
    """One incoming migration's page server on the target: a plain `criu page-server` writing the memory
    images into a root-only directory, reached only through a TLS relay (pagerelay.Inbound) that takes
    one client with a cluster CA certificate. CRIU's own --tls would do, at a third of the speed."""

    def __init__(self, manager: containers.Manager, job: str) -> None:
        node = node_of(manager)
        self.job = job
        self.id = f"{job}-{time.monotonic_ns()}"
        self.dir = checkpoints.secure_dir(manager.state_dir / "incoming") / f"{self.id}.pages"
        self.dir.mkdir(mode=0o700)
        self.address = node.address
        criu_port = free_port(node.address)
        self.created = time.monotonic()
        ready_r, ready_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                ["criu", "page-server", "-D", str(self.dir), "--address", self.address, "--port", str(criu_port),
                 "--status-fd", str(ready_w), "-o", "page-server.log", "-v2"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
        try:
            ready = _wait_byte(ready_r, READY_TIMEOUT)
        finally:
            os.close(ready_r)
        try:
            if not ready:
                raise errors.CheckpointError(f"criu page-server did not start: {self.log_tail()}")
            try:  # connect first: the page server's one connection is the relay's
                self.relay = pagerelay.Inbound(self.address, (self.address, criu_port),
                                               tls.server_context(node.identity))
            except OSError as e:
                raise errors.CheckpointError(f"could not reach the new page server: {e}") from e
        except errors.CheckpointError:
            self._proc.kill()
            self._proc.communicate()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.port = self.relay.port

    @property
    def page_server(self) -> str:
        """ADDRESS:PORT for the source's `runc checkpoint --page-server`."""
        return f"{self.address}:{self.port}"

    @property
    def pid(self) -> int:
        """The page server's process id."""
        return self._proc.pid

    def collect(self, images_dir: pathlib.Path, timeout: float) -> None:
        """Wait for the page server to end (the dump is over) and move its images into images_dir.

        CheckpointError if it failed (connection refused, cut or unauthenticated) or wrote no memory:
        the set is then not whole and must not be restored.
        """
        try:
            _, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise errors.CheckpointError(f"page server {self.page_server} still running after {timeout} s") from None
        if self._proc.returncode != 0:
            detail = err.decode(errors="replace").strip()
            raise errors.CheckpointError(
                f"page server {self.page_server} failed ({self._proc.returncode}): {detail} {self.log_tail()}"
            )
        if not self.relay.done.wait(timeout) or not self.relay.ok:
            raise errors.CheckpointError(
                f"page server {self.page_server}: the TLS page stream failed: {self.relay.error or 'unfinished'}"
            )
        pages = [p for p in self.dir.iterdir() if p.name.startswith(PAGE_IMAGES)]
        if not any(p.name.startswith("pagemap-") for p in pages):
            raise errors.CheckpointError(f"page server {self.page_server} received no memory images")
        for p in pages:
            os.rename(p, images_dir / p.name)

    def close(self) -> None:
        """Stop the page server if it still runs and delete what it received."""
        self.relay.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 10) -> str:
        """The end of CRIU's log, for error messages."""
        return " / ".join(errors.log_tail(self.dir / "page-server.log", lines))


def _wait_byte(fd: int, timeout: float) -> bool:
    """Whether CRIU wrote its ready byte (\\0) on fd in time."""
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable) and os.read(fd, 1) == b"\0"


# --- the target's open sinks ----------------------------------------------------------------------

SINK_TTL = 600.0  # a sink the source never used (it died, or gave up) is dropped after this long
_sinks: weakref.WeakKeyDictionary[containers.Manager, dict[str, Sink]] = weakref.WeakKeyDictionary()
_sinks_lock = threading.Lock()


def open_sink(manager: containers.Manager, job: str) -> Sink:
    """Start a page server for one incoming migration of `job`; it is dropped if unused for SINK_TTL."""
    sink = Sink(manager, job)
    with _sinks_lock:
        _sinks.setdefault(manager, {})[sink.id] = sink
    timer = threading.Timer(SINK_TTL, _expire, args=(manager, sink.id))
    timer.daemon = True
    timer.start()
    return sink


def take_sink(manager: containers.Manager, sink_id: str, job: str) -> Sink:
    """The open sink with this id, for this job, now the caller's; CheckpointError if there is none."""
    with _sinks_lock:
        sink = _sinks.get(manager, {}).get(sink_id)
        if sink is None or sink.job != job:
            raise errors.CheckpointError(f"no page server {sink_id!r} open here for job {job}")
        del _sinks[manager][sink_id]
    return sink


def open_sinks(manager: containers.Manager) -> list[Sink]:
    """The sinks open on this agent (status, tests)."""
    with _sinks_lock:
        return list(_sinks.get(manager, {}).values())


def drop_sink(manager: containers.Manager, sink_id: str) -> bool:
    """Close an open sink (its source gave up); whether there was one."""
    with _sinks_lock:
        sink = _sinks.get(manager, {}).pop(sink_id, None)
    if sink is None:
        return False
    sink.close()
    return True


def _expire(manager: containers.Manager, sink_id: str) -> None:
    if drop_sink(manager, sink_id):
        log.warning("page server %s was never used: dropped", sink_id)
