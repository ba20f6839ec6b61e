"""The home directory proxy on the agent's mutual-TLS API (only authenticated peers reach it).

    POST /homefs/{job}/meta                       {"op": ..., "args": {...}} → JSON
    GET  /homefs/{job}/read?fh=&offset=&size=     → the bytes (at most MAX_IO)
    POST /homefs/{job}/write?fh=&offset=          the bytes → {"written": n}

A failed file operation answers 422 with {"errno": n, "error": text}, which the FUSE side returns
to the job as that errno; a job this node does not serve answers 403.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from aiohttp import web

from mosix.agent.homefs import exports

MAX_IO = 1 << 20
EXPORTS: web.AppKey[exports.Exports] = web.AppKey("homefs", exports.Exports)


def add(app: web.Application, served: exports.Exports) -> None:
    """Serve `served` on `app`."""
    app[EXPORTS] = served
    app.add_routes([
        web.post("/homefs/{job}/meta", _meta),
        web.get("/homefs/{job}/read", _read),
        web.post("/homefs/{job}/write", _write),
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


async def _read(request: web.Request) -> web.Response:
    q = request.query
    size = int(q["size"])
    if not 0 <= size <= MAX_IO:
        raise ValueError(f"size must be 0..{MAX_IO}")
    try:
        data = await asyncio.to_thread(request.app[EXPORTS].read, request.match_info["job"], int(q["fh"]),
                                       int(q["offset"]), size)
    except OSError as e:
        return _failed(e)
    return web.Response(body=data, content_type="application/octet-stream")


async def _write(request: web.Request) -> web.Response:
    q = request.query
    data = await request.read()
    if len(data) > MAX_IO:
        raise ValueError(f"at most {MAX_IO} bytes per write")
    try:
        written = await asyncio.to_thread(request.app[EXPORTS].write, request.match_info["job"], int(q["fh"]),
                                          int(q["offset"]), data)
    except OSError as e:
        return _failed(e)
    return web.json_response({"written": written})
