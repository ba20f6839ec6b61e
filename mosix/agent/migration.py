"""Stop-and-copy migration to a peer agent, as a transaction: the job is never lost.

The source dumps the job (its process ends), sends the set to the peer over mutual TLS, and
forgets it only when the peer answers that the restored job runs. Any failure on the way (peer
unreachable or refusing, transfer cut) restores the job here from the same set.
"""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import logging
import shutil
import ssl
import time
from typing import Any

import aiohttp

from mosix.agent import checkpoints, containers, errors, transfer

log = logging.getLogger(__name__)


class MigrationFailed(errors.AgentError):
    """The migration did not happen; the job was restored on the source."""


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished migration, with its measured times."""

    peer_status: dict[str, Any]
    frozen_seconds: float  # from the dump's start until the peer confirmed a running restore
    bytes_sent: int
    total_seconds: float | None = None  # post-copy: from the dump's start until the last page arrived


async def migrate(manager: containers.Manager, name: str, peer_url: str, context: ssl.SSLContext,
                  lazy: bool = False) -> Result:
    """Move a running job to the agent at peer_url (https://127.0.0.N:P); lazy: by post-copy.
    A job pinned by its /run/mosix/lock is refused before anything is touched."""
    if manager.procdir(name).locked():
        raise MigrationFailed(f"job {name} is locked to {manager.node} (its /run/mosix/lock is 1): not migrating")
    if lazy:
        from mosix.agent import postcopy  # it imports this module

        return await postcopy.migrate(manager, name, peer_url, context)
    work = checkpoints.secure_dir(manager.state_dir / "outgoing") / f"{name}-{time.monotonic_ns()}"
    set_dir = work / "set"
    started = time.monotonic()
    await asyncio.to_thread(manager.stop_into, name, set_dir, "migration")
    sender = transfer.Sender(set_dir)
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"{peer_url}/migrations", data=_chunks(sender), headers={transfer.JOB_HEADER: name},
                ssl=context) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise MigrationFailed(f"{peer_url} refused {name}: {resp.status} {body.get('error')}")
    except BaseException as e:
        # The answer may be what was lost, not the restore: ask the peer before restoring here.
        confirmed = None if isinstance(e, MigrationFailed) or not sender.digest else await _restored_by(
            peer_url, sender.digest, context)
        if confirmed is not None:
            log.warning("migration of %s to %s: answer lost (%s) but the peer runs it", name, peer_url, e)
            shutil.rmtree(work, ignore_errors=True)
            return Result(peer_status=confirmed, frozen_seconds=time.monotonic() - started, bytes_sent=sender.sent)
        log.warning("migration of %s to %s failed (%s): restoring it here", name, peer_url, e)
        await asyncio.to_thread(manager.restore, name, set_dir)
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, MigrationFailed):
            raise
        if isinstance(e, (aiohttp.ClientError, OSError, errors.AgentError, TimeoutError)):
            raise MigrationFailed(f"migration of {name} to {peer_url} failed: {e}") from e
        raise
    finally:
        sender.close()
    shutil.rmtree(work, ignore_errors=True)
    return Result(peer_status=body, frozen_seconds=time.monotonic() - started, bytes_sent=sender.sent)


async def _restored_by(peer_url: str, digest: str, context: ssl.SSLContext) -> dict[str, Any] | None:
    """The peer's status of the job it restored from the set with this digest, or None."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(
                f"{peer_url}/migrations/{digest}", ssl=context) as resp:
            if resp.status != 200:
                return None
            body: dict[str, Any] = await resp.json()
            return body if body.get("state") == "Running" else None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def _chunks(sender: transfer.Sender) -> collections.abc.AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(sender.read):
        yield chunk
