"""Stop-and-copy migration to a peer agent, as a transaction: the job is never lost.

With page streams enabled on both agents (pageserver.enable), the memory is written once, on the
target: the peer opens a CRIU page server for this migration (`POST /migrations/page-servers`),
the source pauses the job and dumps it with `--leave-running --page-server`, so the pages stream
over mutual TLS (pagerelay) into the peer's restore directory while the job stays here, frozen
and whole. Then the small images and the job's writable layer (read in place, not copied) go over the mutual-TLS API
as one tar with its SHA-256 (`POST /migrations`, naming the page server); the peer restores. Only
when the peer answers that the job runs there is it killed here and its layer torn down (after
the answer, the job's lock held until it is done); any
failure before (peer refusing, page stream or transfer cut) thaws it here: the rollback is a resume.

Without page streams (an agent not enabled, or a peer without the endpoint) the whole set, memory
included, is dumped here and sent as one tar; a failure restores the job from that set.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import dataclasses
import logging
import pathlib
import queue
import shutil
import ssl
import threading
import time
import typing
from typing import Any

import aiohttp

from mosix.agent import checkpoints, containers, errors, jobs, pagerelay, pageserver, runc, tls, transfer, unsupported

log = logging.getLogger(__name__)

PAGES_HEADER = "X-Mosix-Page-Server"  # the id of the peer's page server that holds the set's memory
COLLECT_TIMEOUT = 120.0  # for the peer's page server to end once the source's dump has
RELAY_TIMEOUT = 60.0  # for the page stream's relay to end once the dump has


class MigrationFailed(errors.AgentError):
    """The migration did not happen; the job runs on the source."""


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished migration, with its measured times."""

    peer_status: dict[str, Any]
    frozen_seconds: float  # from the dump's start until the peer confirmed a running restore
    bytes_sent: int
    total_seconds: float | None = None  # post-copy: from the dump's start until the last page arrived
    phases: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per step, for tuning


async def migrate(manager: containers.Manager, name: str, peer_url: str, context: ssl.SSLContext,
                  lazy: bool = False) -> Result:
    """Move a running job to the agent at peer_url (https://127.0.0.N:P); lazy: by post-copy.
    A job pinned by its /run/mosix/lock is refused before anything is touched."""
    if manager.procdir(name).locked():
        raise MigrationFailed(f"job {name} is locked to {manager.node} (its /run/mosix/lock is 1): not migrating")
    if lazy:
        from mosix.agent import postcopy  # it imports this module

        return await postcopy.migrate(manager, name, peer_url, context)
    # One session for the migration's requests: the peer's TLS handshake is done once, not per request.
    async with aiohttp.ClientSession() as session:
        peer = _Peer(session, peer_url, context)
        if pageserver.enabled(manager):
            return await _streamed(manager, name, peer)
        return await _by_set(manager, name, peer)


@dataclasses.dataclass(frozen=True)
class _Peer:
    """The peer agent as one migration talks to it."""

    session: aiohttp.ClientSession
    url: str
    context: ssl.SSLContext


# --- with a page stream -------------------------------------------------------------------------------


async def _open_sink(peer: _Peer, name: str) -> dict[str, str] | None:
    """Ask the peer for a page server for this job: {"id", "page_server"}; None if it has no such endpoint."""
    peer_url = peer.url
    try:
        async with peer.session.post(f"{peer_url}/migrations/page-servers", json={"job": name}, ssl=peer.context,
                                     timeout=aiohttp.ClientTimeout(total=60)) as resp:
            if resp.status in (404, 405):
                return None
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise MigrationFailed(f"{peer_url} refused a page server for {name}: {resp.status} {body.get('error')}")
            return {"id": str(body["id"]), "page_server": str(body["page_server"])}
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as e:
        raise MigrationFailed(f"migration of {name} to {peer_url} failed before the dump: {e}") from e


async def _drop_sink(peer: _Peer, sink_id: str) -> None:
    """Tell the peer its page server will not be used (best effort: it expires anyway)."""
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with peer.session.delete(f"{peer.url}/migrations/page-servers/{sink_id}", ssl=peer.context,
                                       timeout=aiohttp.ClientTimeout(total=10)) as resp:
            await resp.read()


async def _streamed(manager: containers.Manager, name: str, peer: _Peer) -> Result:
    """The dump starts at once, while the peer opens its page server: CRIU's page connection waits in
    the relay for the server's address. A peer without page servers gets the whole set instead."""
    started = time.monotonic()
    work = checkpoints.secure_dir(manager.state_dir / "outgoing") / f"{name}-{time.monotonic_ns()}"
    page_server: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()
    dump = FrozenDump(manager, name, work / "set", page_server)
    try:
        sink = await _open_sink(peer, name)
    except BaseException:
        page_server.set_exception(MigrationFailed(f"{peer.url} opened no page server"))
        await _settle(dump)
        shutil.rmtree(work, ignore_errors=True)
        raise
    opened_at = time.monotonic()
    if sink is None:
        page_server.set_exception(MigrationFailed(f"{peer.url} has no page servers"))
        await _settle(dump)
        shutil.rmtree(work, ignore_errors=True)
        return await _by_set(manager, name, peer)
    host, _, port = sink["page_server"].rpartition(":")
    page_server.set_result((host, int(port)))
    try:
        await asyncio.wrap_future(dump.ready)
    except errors.AgentError as e:
        shutil.rmtree(work, ignore_errors=True)
        await _drop_sink(peer, sink["id"])
        if isinstance(e, errors.JobError | unsupported.Unsupported):  # not the peer's doing: the caller's to handle
            raise
        raise MigrationFailed(f"migration of {name}: the dump into {peer.url}'s page server failed, "
                              f"the job runs on: {e}") from e
    sent_at = time.monotonic()
    sender = transfer.Sender(dump.set_dir, beside=(dump.upper,))
    try:
        body = await _hand_over(peer, name, sender, {PAGES_HEADER: sink["id"]})
    except BaseException as e:
        dump.decide(False)
        await asyncio.wrap_future(dump.done)
        shutil.rmtree(work, ignore_errors=True)
        log.warning("migration of %s to %s failed (%s): it runs on here", name, peer.url, e)
        _raise_failure(e, name, peer.url)
    finally:
        sender.close()
    confirmed_at = time.monotonic()
    # The peer runs the job: the migration is done. Ending the frozen copy here and tearing down its
    # layer happen after the answer, in the dump's thread, which holds the job's lock until they are
    # over (so anything else asking about the job here waits for them).
    dump.decide(True)
    dump.done.add_done_callback(lambda done: _released(name, work, done))
    phases = {"page_server": opened_at - started, **dump.phases, "send_and_restore": confirmed_at - sent_at}
    log.info("migrated %s to %s: %s", name, peer.url, " ".join(f"{k}={v:.3f}" for k, v in phases.items()))
    return Result(peer_status=body, frozen_seconds=confirmed_at - dump.paused_at, bytes_sent=sender.sent,
                  phases=phases)


async def _settle(dump: FrozenDump) -> None:
    """Wait for a dump that can no longer be used to end, with the job thawed here."""
    try:
        await asyncio.wrap_future(dump.ready)
    except Exception:  # it failed, so it thawed the job: all that was waited for
        return
    dump.decide(False)
    await asyncio.wrap_future(dump.done)


def _released(name: str, work: pathlib.Path, done: concurrent.futures.Future[bool]) -> None:
    """After the source let a migrated job go: its outgoing set goes too; a failed teardown is logged."""
    shutil.rmtree(work, ignore_errors=True)
    if (err := done.exception()) is not None:
        log.warning("migrated %s, but its teardown here failed: %s", name, err)


class HeldDump:
    """One job dumped for a migration and held here, paused, until the peer answers: `decide(True)` (it
    runs there: `_proceed`) or `decide(False)` (`_abort`: thaw it here). A thread of its own holds the
    job's lock from the dump to the end, so nothing else (not the reaper either) touches the job. `ready`
    is set once the set is written (an error: the dump failed and the job runs on here); `done` says
    whether the job left this node (True) or runs on here (False). Subclasses set their own attributes
    before calling this __init__ (it starts the thread) and write `_dump` and `_proceed`."""

    def __init__(self, manager: containers.Manager, name: str, set_dir: pathlib.Path, thread_name: str) -> None:
        self.manager = manager
        self.name = name
        self.set_dir = set_dir
        self._entry = manager._get(name)
        self.upper = self._entry.dir / "upper"  # sent in place: the job is frozen until decided
        self.phases: dict[str, float] = {}
        self._decision: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        threading.Thread(target=self._run, name=thread_name, daemon=True).start()

    def decide(self, proceed: bool) -> None:
        """The peer runs the job (True) or will not (False)."""
        self._decision.put(proceed)

    def _run(self) -> None:
        e = self._entry
        with e.lock:
            try:
                self._dump(e)
            except BaseException as err:
                self._thaw()
                self._cleanup()
                self.ready.set_exception(err)
                return
            self.ready.set_result(None)
            try:
                self.done.set_result(self._proceed() if self._decision.get() else self._abort())
            except BaseException as err:
                self.done.set_exception(err)
            finally:
                self._cleanup()

    def _dump(self, e: Any) -> None:
        """Pause the job (Manager._pause_for_dump) and write the set into set_dir."""
        raise NotImplementedError

    def _proceed(self) -> bool:
        """The peer runs the job: whether it left this node (False: it runs on here after all)."""
        raise NotImplementedError

    def _abort(self) -> bool:
        """The peer will not run the job: thaw it here."""
        self._thaw()
        return False

    def _thaw(self) -> None:
        self.manager._thaw(self._entry)

    def _cleanup(self) -> None:
        """What the dump left behind, once the outcome is known."""


class FrozenDump(HeldDump):
    """The stop-and-copy dump into a peer's page server, `--leave-running` while paused: on `decide(True)`
    the frozen processes here are killed and the layer torn down."""

    def __init__(self, manager: containers.Manager, name: str, set_dir: pathlib.Path,
                 page_server: pagerelay.Peer) -> None:
        self.page_server = page_server
        self.node = pageserver.node_of(manager)
        self.paused_at = time.monotonic()
        super().__init__(manager, name, set_dir, f"migrate {name}")

    def _dump(self, e: Any) -> None:
        m = self.manager
        m._require(e, jobs.State.RUNNING)
        checkpoints.secure_dir(self.set_dir.parent)
        staging = checkpoints.staging_for(self.set_dir)
        work = m._scratch(f"migrate-{self.name}")
        try:
            relay = pagerelay.Outbound(self.node.address, self.page_server, tls.client_context(self.node.identity))
            self.paused_at = time.monotonic()
            held = m._pause_for_dump(e)
            dump_at = time.monotonic()
            try:
                m.runtime.checkpoint(self.name, staging / checkpoints.IMAGES, work, leave_running=True,
                                     page_server=f"{self.node.address}:{relay.port}")
            except runc.Refused as refused:
                raise unsupported.classify(refused, work / "dump.log") from refused
            finally:
                relay.close()
            if not relay.done.wait(RELAY_TIMEOUT) or not relay.ok:
                raise MigrationFailed(f"the page stream to the peer's page server failed: {relay.error or 'cut'}")
            dumped_at = time.monotonic()
            meta = m._meta(e, held, serial=1, reason="migration", dump_seconds=dumped_at - dump_at)
            checkpoints.publish(staging, self.set_dir, meta)
            self.phases = {"pause": dump_at - self.paused_at, "dump": dumped_at - dump_at}
            if relay.connected_at is not None and relay.streaming_at is not None:  # the dump's parts
                self.phases |= {"dump_start": relay.connected_at - dump_at,
                                "wait_for_peer": relay.streaming_at - relay.connected_at,
                                "page_stream": dumped_at - relay.streaming_at}
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _proceed(self) -> bool:
        """The peer runs the job: end the frozen processes here and tear down the layer."""
        with contextlib.suppress(runc.Refused):
            self.manager.runtime.delete(self.name, force=True)  # runc freezes, kills and thaws a paused container
        self.manager._end_dumped(self._entry)
        return True


# --- the whole set in one tar ---------------------------------------------------------------------------


async def _by_set(manager: containers.Manager, name: str, peer: _Peer) -> Result:
    work = checkpoints.secure_dir(manager.state_dir / "outgoing") / f"{name}-{time.monotonic_ns()}"
    set_dir = work / "set"
    started = time.monotonic()
    await asyncio.to_thread(manager.stop_into, name, set_dir, "migration")
    sender = transfer.Sender(set_dir)
    try:
        body = await _hand_over(peer, name, sender, {})
    except BaseException as e:
        log.warning("migration of %s to %s failed (%s): restoring it here", name, peer.url, e)
        await asyncio.to_thread(manager.restore, name, set_dir)
        shutil.rmtree(work, ignore_errors=True)
        _raise_failure(e, name, peer.url)
    finally:
        sender.close()
    shutil.rmtree(work, ignore_errors=True)
    return Result(peer_status=body, frozen_seconds=time.monotonic() - started, bytes_sent=sender.sent)


async def _hand_over(peer: _Peer, name: str, sender: transfer.Sender, headers: dict[str, str]) -> dict[str, Any]:
    """Posts the set to the peer; its status of the job, running there. A lost answer is not a failure
    when the peer, asked by the set's digest, runs the job: taking the job back then would run it twice.
    Any other failure is raised; the caller takes the job back."""
    try:
        async with peer.session.post(f"{peer.url}/migrations", data=_chunks(sender), ssl=peer.context,
                                     headers={transfer.JOB_HEADER: name, **headers}) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status != 200:
                raise MigrationFailed(f"{peer.url} refused {name}: {resp.status} {body.get('error')}")
            return body
    except BaseException as e:
        confirmed = None if isinstance(e, MigrationFailed) or not sender.digest else await _restored_by(
            peer, sender.digest)
        if confirmed is None:
            raise
        log.warning("migration of %s to %s: answer lost (%s) but the peer runs it", name, peer.url, e)
        return confirmed


def _raise_failure(e: BaseException, name: str, peer_url: str) -> typing.NoReturn:
    """Raises what a failed hand-over means: MigrationFailed for what the network or the peer did;
    anything else (a cancellation, a bug) as it is."""
    if isinstance(e, aiohttp.ClientError | OSError | errors.AgentError | TimeoutError) \
            and not isinstance(e, MigrationFailed):
        raise MigrationFailed(f"migration of {name} to {peer_url} failed: {e}") from e
    raise e


async def _restored_by(peer: _Peer, digest: str) -> dict[str, Any] | None:
    """The peer's status of the job it restored from the set with this digest, or None."""
    try:
        async with peer.session.get(f"{peer.url}/migrations/{digest}", ssl=peer.context,
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status != 200:
                return None
            body: dict[str, Any] = await resp.json()
            return body if body.get("state") == "Running" else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def _chunks(sender: transfer.Sender) -> collections.abc.AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(sender.read):
        yield chunk
