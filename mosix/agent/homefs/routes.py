"""The home directory proxy on the agent's mutual-TLS API (only authenticated peers reach it).

    POST /homefs/{job}/meta                       {"op": ..., "args": {...}} → JSON
    POST /homefs/{job}/stream                     `wire` frames, as long as the mount lives → their answers

A failed file operation answers 422 with {"errno": n, "error": text}, which the FUSE side returns
to the job as that errno; a job this node does not serve answers 403.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import aiohttp
from aiohttp import web

from mosix.agent.homefs import exports, wire

MAX_IO = wire.MAX_IO
QUEUE = 16  # frames read ahead of the one being carried out: the network and the disk overlap
Frame = tuple[wire.Op, int, int, int, int, bytes]
EXPORTS: web.AppKey[exports.Exports] = web.AppKey("homefs", exports.Exports)


def add(app: web.Application, served: exports.Exports) -> None:
    """Serve `served` on `app`."""
    app[EXPORTS] = served
    app.add_routes([
        web.post("/homefs/{job}/meta", _meta),
        web.post("/homefs/{job}/stream", _stream),
    ])


def _failed(e: OSError) -> web.Response:
    code = e.errno or errno.EIO
    status = 403 if isinstance(e, exports.NotExported) else 422
    return web.json_response({"errno": code, "error": str(e)}, status=status)


async def _meta(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    args = body.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError("args must be an object")
    try:
        result = await asyncio.to_thread(request.app[EXPORTS].meta, request.match_info["job"], str(body["op"]), args)
    except TypeError as e:  # wrong arguments for the operation
        raise ValueError(str(e)) from e
    except OSError as e:
        return _failed(e)
    return web.json_response(result)


async def _stream(request: web.Request) -> web.StreamResponse:
    """One mount's data stream: frames are read as they come and carried out in order by one worker."""
    served, job = request.app[EXPORTS], request.match_info["job"]
    if job not in served.jobs():
        return _failed(exports.NotExported(job))
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    todo: asyncio.Queue[Frame | None] = asyncio.Queue(QUEUE)
    worker = asyncio.create_task(_carry_out(served, job, todo, resp))
    try:
        while True:
            try:
                op, rid, fh, offset, size = wire.REQUEST.unpack(await request.content.readexactly(wire.REQUEST.size))
                if op not in wire.Op.__members__.values() or size > MAX_IO:
                    break  # not our peer's frames: end the stream
                data = await request.content.readexactly(size) if op == wire.Op.WRITE else b""
            except (asyncio.IncompleteReadError, ConnectionError, aiohttp.ClientError):
                break  # the mount went away
            await todo.put((wire.Op(op), rid, fh, offset, size, data))
    finally:
        await todo.put(None)
        await worker
    return resp


Answer = tuple[int, int, int, bytes]  # id, errno, value, payload


def _answer(served: exports.Exports, job: str, frame: Frame) -> Answer:
    """Carry out one frame."""
    op, rid, fh, offset, size, data = frame
    try:
        if op == wire.Op.WRITE:
            return rid, 0, served.write(job, fh, offset, data), b""
        if op == wire.Op.READ:
            return rid, 0, 0, served.read(job, fh, offset, size)
        if op == wire.Op.FSYNC:
            served.meta(job, "fsync", {"fh": fh, "datasync": offset == 1})
    except OSError as e:
        return rid, e.errno or errno.EIO, 0, b""
    except (ValueError, OverflowError):
        return rid, errno.EINVAL, 0, b""
    return rid, 0, 0, b""


def _answers(served: exports.Exports, job: str, frames: list[Frame]) -> list[Answer]:
    return [_answer(served, job, f) for f in frames]


async def _carry_out(served: exports.Exports, job: str, todo: asyncio.Queue[Frame | None],
                     resp: web.StreamResponse) -> None:
    """Carry out the frames in order and answer each; once the peer is gone, only empty the queue.
    The frames waiting are taken together: one trip to a worker thread for all of them."""
    gone, end = False, False
    while not end:
        frames: list[Frame] = []
        frame = await todo.get()
        while frame is not None:
            frames.append(frame)
            if todo.empty():
                break
            frame = todo.get_nowait()
        end = frame is None
        if gone or not frames:
            continue
        for rid, err, value, payload in await asyncio.to_thread(_answers, served, job, frames):
            try:
                await resp.write(wire.reply(rid, err, value, len(payload)))
                if payload:
                    await resp.write(payload)  # a chunk of its own: no copy of it joined to the header
            except (ConnectionError, aiohttp.ClientError):
                gone = True
                break
