"""The home directory proxy on the agent's mutual-TLS API (only authenticated peers reach it).

    POST /homefs/{job}/meta                       {"op": ..., "args": {...}} → JSON
    POST /homefs/{job}/stream                     → {"port": n}: where the job's data stream goes (`dataport`)

A failed file operation answers 422 with {"errno": n, "error": text}, which the FUSE side returns
to the job as that errno; a job this node does not serve answers 403.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from typing import Any

from aiohttp import web

from mosix.agent.homefs import dataport, exports

EXPORTS: web.AppKey[exports.Exports] = web.AppKey("homefs", exports.Exports)
DATA: web.AppKey[dataport.DataPort] = web.AppKey("homefs_data", dataport.DataPort)


def add(app: web.Application, served: exports.Exports) -> None:
    """Serve `served` on `app`."""
    app[EXPORTS] = served
    app.add_routes([
        web.post("/homefs/{job}/meta", _meta),
        web.post("/homefs/{job}/stream", _stream),
    ])


def listen(app: web.Application, address: str, context: ssl.SSLContext) -> dataport.DataPort:
    """A data port for the streams (a port of its own, same TLS), closed with the app; the caller starts
    it once the API's port is bound."""
    port = app[DATA] = dataport.DataPort(app[EXPORTS], context, address)

    async def close(_: web.Application) -> None:
        await asyncio.to_thread(port.close)

    app.on_cleanup.append(close)
    return port


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


async def _stream(request: web.Request) -> web.Response:
    """The data port (the stream's own hello checks the job again: the port is open to any peer)."""
    job = request.match_info["job"]
    if job not in request.app[EXPORTS].jobs():
        return _failed(exports.NotExported(job))
    data = request.app.get(DATA)
    if data is None or data.port is None:
        return _failed(OSError(errno.EIO, "this agent has no homefs data port"))
    return web.json_response({"port": data.port})
