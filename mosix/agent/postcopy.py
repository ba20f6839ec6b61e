"""Post-copy migration: the job restarts on the peer before its memory has moved; CRIU's lazy pages
bring the rest over a mutually authenticated TLS stream from the source's page server.

Source (`migrate`):
 1. pause the job, drain its output, copy its writable layer (as a stop-and-copy dump does);
 2. `runc checkpoint --lazy-pages --page-server ADDR:PORT --status-fd FD`: CRIU writes every image
    but the lazy memory, says so on FD, and serves the memory from the still-frozen processes;
 3. send the set (without that memory: small) to the peer as a lazy migration (`LAZY_HEADER`
    names the page server); the peer answers 200 once the job runs there (the freeze ends);
 4. wait until `runc checkpoint` exits: every page has been pulled, CRIU has killed the frozen
    processes. Only then does the source forget the job.
Destination (`restore`): `criu lazy-pages --page-server --address --port -D images`, then
`runc restore --lazy-pages`; the daemon fetches faulted pages first and the rest in the
background, and exits when all have arrived.

The transaction: until the last page is across, the source's processes exist, frozen. If the
peer refuses or the page stream breaks, CRIU's dump fails and thaws them (`cr_dump_finish`), so
the job runs on here; a peer that had restored it is told to kill its copy.

TLS: runc has no flag for CRIU's `--tls*` options, so the source's CRIU gets them from a config
file named in `CRIU_CONFIG_FILE` (CRIU reads it in RPC mode too); the lazy-pages daemon takes
them on its command line. Both present certificates of the cluster CA and check the other's.
Each agent must be `enable`d with its TLS files and address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import pathlib
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from typing import Any

import aiohttp

from mosix.agent import (
    checkpoints,
    containers,
    errors,
    jobs,
    migration,
    pageserver,
    runc,
    transfer,
    unsupported,
)

log = logging.getLogger(__name__)

LAZY_HEADER = "X-Mosix-Lazy-Pages"  # ADDRESS:PORT of the source's page server
READY_TIMEOUT = 120.0  # for CRIU to write the non-lazy images
PAGES_TIMEOUT = 3600.0  # for all pages to cross (a few GiB at ~200 MB/s is well inside)


class PostCopyFailed(errors.AgentError):
    """The post-copy migration did not happen; the job runs on the source."""


# The TLS settings and helpers are the page streams' (stop-and-copy streams pages too).
Node = pageserver.Node
enable = pageserver.enable
node_of = pageserver.node_of
tls_options = pageserver.tls_options
write_criu_config = pageserver.write_criu_config
free_port = pageserver.free_port


# --- source ------------------------------------------------------------------------------------------


class LazyDump(migration.HeldDump):
    """One job's lazy checkpoint on the source: its frozen processes serve their pages from here until
    the peer's lazy-pages daemon has them all (`decide(True)`), or the dump is made to fail (`decide(False)`)."""

    def __init__(self, manager: containers.Manager, name: str, set_dir: pathlib.Path, node: Node) -> None:
        self.node = node
        self.port = free_port(node.address)
        self._proc: subprocess.Popen[bytes] | None = None
        self._work: pathlib.Path | None = None
        super().__init__(manager, name, set_dir, f"post-copy {name}")

    @property
    def page_server(self) -> str:
        """ADDRESS:PORT of the page server."""
        return f"{self.node.address}:{self.port}"

    def _dump(self, e: Any) -> None:
        m = self.manager
        m._require(e, jobs.State.RUNNING)
        checkpoints.secure_dir(self.set_dir.parent)
        staging = checkpoints.staging_for(self.set_dir)
        self._work = m._scratch(f"lazy-dump-{self.name}")
        config = write_criu_config(self._work / "criu-tls.conf", self.node.identity)
        paused_at = time.monotonic()
        held = m._pause_for_dump(e)
        # The writable layer is not copied: it goes into the tar in place (`upper`), the job frozen meanwhile.
        status_r, status_w = os.pipe()
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                [m.runtime.binary, "--root", str(m.runtime.root), "checkpoint", "--lazy-pages",
                 "--page-server", self.page_server, "--status-fd", str(status_w),
                 "--image-path", str(staging / checkpoints.IMAGES), "--work-path", str(self._work), self.name],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(status_w,), env={**os.environ, "CRIU_CONFIG_FILE": str(config)})
        finally:
            os.close(status_w)
        try:
            ready = _wait_ready(status_r, self._proc, READY_TIMEOUT)
        finally:
            os.close(status_r)
        if not ready:
            self._proc.kill()
            _, err = self._proc.communicate()
            refused = runc.Refused(["checkpoint", "--lazy-pages", self.name], self._proc.returncode or -1,
                                   err.decode(errors="replace") + self._criu_log())
            raise unsupported.classify(refused, self._work / "dump.log")
        meta = m._meta(e, held, serial=1, reason="migration:post-copy", dump_seconds=time.monotonic() - started)
        checkpoints.publish(staging, self.set_dir, meta)
        self.phases = {"pause": started - paused_at, "lazy_dump": time.monotonic() - started}

    def _proceed(self, timeout: float = PAGES_TIMEOUT) -> bool:
        """Wait until the page server is done. True: every page crossed and CRIU ended the processes
        here (the job is gone from this agent). False: the stream broke and the job runs on here."""
        assert self._proc is not None
        try:
            _, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, err = self._proc.communicate()
        if self._proc.returncode != 0:
            log.warning("post-copy of %s: page server failed (%s): %s%s", self.name, self._proc.returncode,
                        err.decode(errors="replace").strip(), self._criu_log())
            self._thaw()
            return False
        self._let_go()
        return True

    def _abort(self) -> bool:
        """The peer's answer was a refusal or never came: make CRIU's dump fail so it thaws the job
        here. True if it could not, because a lazy-pages daemon had already taken every page (the
        peer runs the job and only its answer was lost): then the job has left, as on success."""
        assert self._proc is not None
        if self._proc.poll() is None:
            # A connection that is not a TLS lazy-pages client ends a waiting page server with an
            # error, and CRIU's dump then resumes the processes (cr_dump_finish). If the peer's
            # daemon is already connected, this one waits unanswered and the page stream decides.
            with contextlib.suppress(OSError), socket.create_connection((self.node.address, self.port), 5) as s:
                s.sendall(b"\0" * 64)
        try:
            self._proc.communicate(timeout=PAGES_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()  # CRIU gone: ptrace releases the processes, the freezer holds them
            self._proc.communicate()
        if self._proc.returncode == 0:
            self._let_go()
            return True
        self._thaw()
        return False

    def _let_go(self) -> None:
        """Every page crossed and CRIU ended the processes here: forget the container."""
        self.manager._end_dumped(self._entry)

    def _criu_log(self) -> str:
        return "" if self._work is None else _tail(self._work / "dump.log", "\n")

    def _cleanup(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None


def _wait_ready(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether CRIU wrote its ready byte on the status fd before runc exited or time ran out."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], min(left, 0.5))
        if readable:
            return os.read(fd, 1) == b"\0"
        if proc.poll() is not None:
            return False
    return False


async def migrate(manager: containers.Manager, name: str, peer_url: str, context: ssl.SSLContext) -> migration.Result:
    """Move a running job to the agent at peer_url by post-copy (see the module's doc)."""
    node = node_of(manager)
    work = checkpoints.secure_dir(manager.state_dir / "outgoing") / f"{name}-lazy-{time.monotonic_ns()}"
    set_dir = work / "set"
    started = time.monotonic()
    dump = LazyDump(manager, name, set_dir, node)
    try:
        await asyncio.wrap_future(dump.ready)
    except errors.AgentError as e:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, (errors.JobError, unsupported.Unsupported)):
            raise
        raise migration.MigrationFailed(f"post-copy of {name}: the lazy dump failed, the job runs on: {e}") from e
    sent_at = time.monotonic()
    sender = transfer.Sender(set_dir, beside=(dump.upper,))
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"{peer_url}/migrations", data=migration._chunks(sender), ssl=context,
                headers={transfer.JOB_HEADER: name, LAZY_HEADER: dump.page_server}) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status != 200:
                raise migration.MigrationFailed(f"{peer_url} refused {name}: {resp.status} {body.get('error')}")
    except BaseException as e:
        dump.decide(False)
        if await asyncio.wrap_future(dump.done):
            log.warning("post-copy of %s to %s: answer lost (%s) but the peer took every page", name, peer_url, e)
            shutil.rmtree(work, ignore_errors=True)
            return migration.Result(peer_status={"state": "Running", "name": name},
                                    frozen_seconds=time.monotonic() - started, bytes_sent=sender.sent,
                                    total_seconds=time.monotonic() - started)
        log.warning("post-copy of %s to %s failed before the peer ran it (%s): it runs on here", name, peer_url, e)
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, (aiohttp.ClientError, OSError, errors.AgentError, TimeoutError)):
            raise migration.MigrationFailed(f"post-copy of {name} to {peer_url} failed: {e}") from e
        raise
    finally:
        sender.close()
    frozen = time.monotonic() - started
    phases = {**dump.phases, "send_and_restore": time.monotonic() - sent_at}
    log.info("post-copy of %s to %s running there after %.3f s: %s", name, peer_url, frozen,
             " ".join(f"{k}={v:.3f}" for k, v in phases.items()))
    dump.decide(True)
    done = await asyncio.wrap_future(dump.done)
    shutil.rmtree(work, ignore_errors=True)
    if not done:
        # The job thawed here: the peer's copy lacks pages and must not run on, nor its output count (the
        # job here prints it again, from where it froze).
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.delete(
                    f"{peer_url}/jobs/{name}", ssl=context) as resp:
                await resp.read()
        raise migration.MigrationFailed(f"post-copy of {name} to {peer_url}: the page stream broke; "
                                        "the job runs on the source")
    return migration.Result(peer_status=body, frozen_seconds=frozen, bytes_sent=sender.sent,
                            total_seconds=time.monotonic() - started, phases=phases)


# --- destination ---------------------------------------------------------------------------------------


def restore(manager: containers.Manager, name: str, set_dir: pathlib.Path, page_server: str) -> jobs.Status:
    """Restore a job from a lazy set, its memory fetched from page_server (ADDRESS:PORT) as it is used.

    The set is moved aside (the caller's directory is left empty) and deleted once the lazy-pages
    daemon has every page and exits.
    """
    node = node_of(manager)
    address, _, port_text = page_server.rpartition(":")
    ipaddress.ip_address(address)  # ValueError (a 400 answer) unless an IP address
    port = int(port_text)
    checkpoints.read_meta(set_dir)  # a whole set, or CheckpointError before anything starts
    lazy_dir = checkpoints.secure_dir(manager.state_dir / "lazy") / f"{name}-{time.monotonic_ns()}"
    os.rename(set_dir, lazy_dir)
    images_dir = lazy_dir / checkpoints.IMAGES
    work = checkpoints.secure_dir(lazy_dir / "work")
    daemon = subprocess.Popen(
        ["criu", "lazy-pages", "--page-server", "--address", address, "--port", str(port),
         "-D", str(images_dir), "-W", str(work), "-o", "lazy-pages.log", "-v2", *tls_options(node.identity)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        status = _restore_lazily(manager, name, lazy_dir=lazy_dir, work=work, daemon=daemon)
    except BaseException:
        if daemon.poll() is None:
            daemon.kill()
        daemon.communicate()
        shutil.rmtree(lazy_dir, ignore_errors=True)
        raise
    threading.Thread(target=_await_pages, args=(name, daemon, lazy_dir), name=f"lazy-pages {name}",
                     daemon=True).start()
    return status


def _restore_lazily(manager: containers.Manager, name: str, *, lazy_dir: pathlib.Path, work: pathlib.Path,
                    daemon: subprocess.Popen[bytes]) -> jobs.Status:
    """Manager.restore, with `runc restore --lazy-pages` against the daemon's socket in `work`. The job's
    layer and bundle are prepared while the daemon starts (it takes longer)."""
    socket_path = work / "lazy-pages.socket"
    started = time.monotonic()
    m = manager
    with m.restoring(name, lazy_dir, take_layer=True) as e:
        prepared = time.monotonic()
        deadline = started + 30
        while not socket_path.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise errors.CheckpointError(f"criu lazy-pages did not start: {_tail(work / 'lazy-pages.log')}")
            time.sleep(0.005)
        daemon_up = time.monotonic()
        images_dir = lazy_dir / checkpoints.IMAGES
        m._start(e, lambda stdio: _runc_restore_lazy(m.runtime, name, e.dir / "bundle", images_dir=images_dir,
                                                           work=work, stdio=stdio))
    log.info("lazy restore of %s: prepared in %.3f s, lazy-pages daemon up in %.3f s, restored in %.3f s", name,
             prepared - started, daemon_up - started, time.monotonic() - daemon_up)
    return m.status(name)


def _runc_restore_lazy(runtime: runc.Runtime, name: str, bundle: pathlib.Path, *, images_dir: pathlib.Path,
                       work: pathlib.Path, stdio: runc.Stdio) -> int:
    """`runc restore --lazy-pages --detach`, the restored process re-attached to stdio. Its pid."""
    runtime.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid_file = runtime.root / f"{name}.pid"
    pid_file.unlink(missing_ok=True)
    log_file = runtime.root / f"restore-{name}.log"
    cmd = [runtime.binary, "--root", str(runtime.root), "--log", str(log_file), "restore", "--detach",
           "--lazy-pages", "--pid-file", str(pid_file), "--image-path", str(images_dir), "--work-path", str(work),
           "--bundle", str(bundle), name]
    proc = subprocess.run(cmd, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr, check=False,
                          env=runc.criu_env(work))
    err = _tail(log_file)
    log_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise runc.Refused(cmd[3:], proc.returncode, err + "\n" + _tail(work / "restore.log"))
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError) as e:
        raise runc.NotRunnable(f"runc restore left no pid in {pid_file}: {e}") from e
    pid_file.unlink(missing_ok=True)
    return pid


def _await_pages(name: str, daemon: subprocess.Popen[bytes], lazy_dir: pathlib.Path) -> None:
    """The lazy-pages daemon exits once every page is here; then the set goes."""
    try:
        _, err = daemon.communicate()
        if daemon.returncode != 0:
            log.warning("lazy pages of %s: criu lazy-pages exited %s: %s %s", name, daemon.returncode,
                        err.decode(errors="replace").strip(), _tail(lazy_dir / "work" / "lazy-pages.log"))
        else:
            log.info("lazy pages of %s: all pages arrived", name)
    finally:
        shutil.rmtree(lazy_dir, ignore_errors=True)


def _tail(path: pathlib.Path, before: str = "") -> str:
    """The end of a CRIU or runc log, after `before`; "" if there is none."""
    lines = errors.log_tail(path)
    return before + "\n".join(lines) if lines else ""
