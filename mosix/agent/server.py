"""The agent's HTTPS API, mutual TLS only: the control plane and peer agents run, checkpoint,
freeze and continue jobs, and send migrations (`POST /migrations`, a checkpoint set as a tar
stream followed by its SHA-256, checked before anything is unpacked or restored; a stop-and-copy
migration's memory arrives beside it, in a page server opened by `POST /migrations/page-servers`).
"""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import logging
import pathlib
import shutil
import ssl
import time
from typing import Any

from aiohttp import web

from mosix.agent import (
    checkpoints,
    containers,
    criu,
    errors,
    homeio,
    jobs,
    migration,
    pageserver,
    postcopy,
    transfer,
)
from mosix.agent.homefs import exports, routes

log = logging.getLogger(__name__)

MANAGER: web.AppKey[containers.Manager] = web.AppKey("manager", containers.Manager)
CLIENT_TLS: web.AppKey[ssl.SSLContext] = web.AppKey("client_tls", ssl.SSLContext)
RESTORED: web.AppKey[dict[str, str]] = web.AppKey("restored", dict)  # set digest -> job name
HOME: web.AppKey[homeio.HomeOutput] = web.AppKey("home", homeio.HomeOutput)


def app(manager: containers.Manager, client_context: ssl.SSLContext | None = None,
        home: homeio.HomeOutput | None = None, homefs: exports.Exports | None = None) -> web.Application:
    """The aiohttp application serving one agent; client_context lets it migrate jobs to peers,
    `home` keeps the output of the jobs whose home this node is and `homefs` serves their working
    directories."""
    a = web.Application(middlewares=[_errors], client_max_size=2 * homeio.CHUNK)
    a[MANAGER] = manager
    a[HOME] = home or homeio.HomeOutput(manager.state_dir / "home")
    a[RESTORED] = {}
    if client_context is not None:
        a[CLIENT_TLS] = client_context
    a.add_routes([
        web.get("/jobs", _list),
        web.post("/jobs", _run),
        web.get("/jobs/{name}", _status),
        web.post("/jobs/{name}/checkpoint", _checkpoint),
        web.post("/jobs/{name}/freeze", _freeze),
        web.post("/jobs/{name}/continue", _continue),
        web.post("/jobs/{name}/migrate", _migrate),
        web.post("/jobs/{name}/kill", _kill),
        web.delete("/jobs/{name}", _remove),
        web.post("/jobs/{name}/restore", _restore),
        web.post("/inspect", _inspect),
        web.post("/migrations", _receive_migration),
        web.post("/migrations/page-servers", _open_page_server),
        web.delete("/migrations/page-servers/{id}", _drop_page_server),
        web.get("/migrations/{digest}", _migration_status),
        web.post("/output", _output_in),
        web.get("/output", _output_out),
        web.get("/input", _input_out),
    ])
    routes.add(a, homefs or exports.Exports())
    return a


async def serve(manager: containers.Manager, address: str, port: int, context: ssl.SSLContext,
                client_context: ssl.SSLContext | None = None, *,
                home: homeio.HomeOutput | None = None, homefs: exports.Exports | None = None) -> web.AppRunner:
    """Start serving on address:port; the caller keeps the runner and calls `cleanup()` to stop."""
    a = app(manager, client_context, home, homefs)
    data = routes.listen(a, address, context)
    runner = web.AppRunner(a, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, address, port, ssl_context=context).start()
        data.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except (errors.JobError, ValueError, KeyError) as e:
        return web.json_response({"error": str(e)}, status=409 if isinstance(e, errors.JobError) else 400)
    except errors.AgentError as e:
        log.warning("%s %s failed: %s", request.method, request.path, e)
        return web.json_response({"error": str(e)}, status=500)


def _peer(request: web.Request) -> str:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for field in (cert or {}).get("subject", ()):
        for k, v in field:
            if k == "commonName":
                return str(v)
    return "?"


async def _list(request: web.Request) -> web.Response:
    m = request.app[MANAGER]
    statuses = await asyncio.to_thread(lambda: [m.status(n).to_dict() for n in m.names()])
    return web.json_response(statuses)


async def _run(request: web.Request) -> web.Response:
    job = jobs.Job.from_dict(await request.json())
    status = await asyncio.to_thread(request.app[MANAGER].run, job)
    return web.json_response(status.to_dict(), status=201)


async def _status(request: web.Request) -> web.Response:
    status = await asyncio.to_thread(request.app[MANAGER].status, request.match_info["name"])
    return web.json_response(status.to_dict())


async def _checkpoint(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    path = await asyncio.to_thread(request.app[MANAGER].checkpoint, request.match_info["name"],
                                   bool(body.get("keep_running", True)))
    return web.json_response({"set": str(path)})


async def _freeze(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    reason = str(body.get("reason", "Manual"))
    if reason not in ("Manual", "Expelled", "Auto"):
        raise ValueError(f"freeze reason {reason!r}: Manual, Expelled or Auto")
    path = await asyncio.to_thread(request.app[MANAGER].freeze, request.match_info["name"], reason)
    return web.json_response({"set": str(path)})


async def _continue(request: web.Request) -> web.Response:
    status = await asyncio.to_thread(request.app[MANAGER].continue_, request.match_info["name"])
    return web.json_response(status.to_dict())


async def _restore(request: web.Request) -> web.Response:
    """mosrun -R{set} -O{fd=path,...}: body {"set": "/path/base.N", "fd_remap": {"3": "/new/path"}}."""
    body = await request.json()
    remap = {int(fd): str(path) for fd, path in dict(body.get("fd_remap") or {}).items()}
    status = await asyncio.to_thread(request.app[MANAGER].restore, request.match_info["name"],
                                     pathlib.Path(str(body["set"])), remap)
    return web.json_response(status.to_dict())


async def _output_in(request: web.Request) -> web.Response:
    """A running job's output arriving home: ?key=&stream=&offset=&first=, the bytes as the body."""
    q = request.query
    data = await request.read()
    try:
        size = await asyncio.to_thread(request.app[HOME].append, q["key"], q["stream"], int(q["offset"]), data,
                                       q.get("first") == "1")
    except homeio.Gap as gap:
        return web.json_response({"error": str(gap), "size": gap.size}, status=409)
    return web.json_response({"size": size})


async def _output_out(request: web.Request) -> web.Response:
    """A job's output kept here, from ?offset= (for followers on other machines)."""
    q = request.query
    data = await asyncio.to_thread(request.app[HOME].read, q["key"], q.get("stream", "stdout"),
                                   int(q.get("offset", "0")))
    return web.Response(body=data, content_type="application/octet-stream")


async def _input_out(request: web.Request) -> web.Response:
    """A mosrun -i job's input kept here, from ?offset=, for the agent running it elsewhere; the
    header says when the input ends after these bytes."""
    q = request.query
    data, ended = await asyncio.to_thread(request.app[HOME].read_input, q["key"], int(q.get("offset", "0")))
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={homeio.ENDED_HEADER: "1" if ended else "0"})


async def _inspect(request: web.Request) -> web.Response:
    """mosrun -I{set}: the descriptors the process had open, as lines and as data."""
    body = await request.json()
    images_dir = pathlib.Path(str(body["set"])) / checkpoints.IMAGES
    fds = await asyncio.to_thread(criu.inspect, images_dir)
    return web.json_response({"lines": [d.describe() for d in fds],
                              "descriptors": [dataclasses.asdict(d) for d in fds]})


async def _kill(request: web.Request) -> web.Response:
    """Kill the job's container (its output and layer stay until the job is removed)."""
    name = request.match_info["name"]
    await asyncio.to_thread(request.app[MANAGER].kill, name)
    status = await asyncio.to_thread(request.app[MANAGER].status, name)
    return web.json_response(status.to_dict())


async def _remove(request: web.Request) -> web.Response:
    """Forget the job: kill it, delete its layer and output (a post-copy whose source took the job back: what
    this copy printed, the source prints again)."""
    name = request.match_info["name"]
    await asyncio.to_thread(request.app[MANAGER].remove, name)
    return web.json_response({"removed": name})


async def _migrate(request: web.Request) -> web.Response:
    """Move the job to the peer agent named in the body ({"peer": "https://127.0.0.N:P", "lazy": false})."""
    body = await request.json()
    peer = str(body["peer"])
    if not peer.startswith("https://"):
        raise ValueError("peer must be an https:// agent URL")
    context = request.app.get(CLIENT_TLS)
    if context is None:
        raise errors.AgentError("this agent has no client certificate to migrate with")
    result = await migration.migrate(request.app[MANAGER], request.match_info["name"], peer, context,
                                     lazy=bool(body.get("lazy", False)))
    return web.json_response({"peer_status": result.peer_status, "frozen_seconds": result.frozen_seconds,
                              "bytes_sent": result.bytes_sent, "total_seconds": result.total_seconds,
                              "phases": result.phases})


async def _receive_migration(request: web.Request) -> web.Response:
    """Receive a set, check its digest, unpack it and restore the job here; 200 only once it runs."""
    m = request.app[MANAGER]
    name = request.headers.get(transfer.JOB_HEADER, "")
    jobs.Job(name=name, args=("x",))  # validates the name before it becomes a path
    sink_id = request.headers.get(migration.PAGES_HEADER)
    sink = pageserver.take_sink(m, sink_id, name) if sink_id else None  # unknown: 400, nothing read
    incoming = checkpoints.secure_dir(m.state_dir / "incoming")
    stamp = f"{name}-{time.monotonic_ns()}"
    tar_path = incoming / f"{stamp}.tar"
    set_dir = incoming / stamp
    started = time.monotonic()
    answered = False
    try:
        receiver = transfer.Receiver(tar_path)
        async for chunk in request.content.iter_chunked(transfer.CHUNK):
            receiver.feed(chunk)
        try:
            digest = receiver.finish()
        except errors.CheckpointError as e:
            log.warning("refused migration of %s from %s: %s", name, _peer(request), e)
            return web.json_response({"error": str(e)}, status=400)
        checkpoints.secure_dir(set_dir)
        received = time.monotonic()
        await asyncio.to_thread(transfer.unpack, tar_path, set_dir)
        tar_path.unlink()
        unpacked = time.monotonic()
        if sink is not None:
            try:
                await asyncio.to_thread(sink.collect, set_dir / checkpoints.IMAGES, migration.COLLECT_TIMEOUT)
            except errors.CheckpointError as e:
                log.warning("refused migration of %s from %s: %s", name, _peer(request), e)
                return web.json_response({"error": str(e)}, status=400)
        collected = time.monotonic()
        page_server = request.headers.get(postcopy.LAZY_HEADER)
        if page_server:
            status = await asyncio.to_thread(postcopy.restore, m, name, set_dir, page_server)
        else:
            status = await asyncio.to_thread(m.restore, name, set_dir, None, True)
        request.app[RESTORED][digest] = name
        log.info("restored %s migrated from %s: receive=%.3f unpack=%.3f pages=%.3f restore=%.3f", name,
                 _peer(request), received - started, unpacked - received, collected - unpacked,
                 time.monotonic() - collected)
        # The job runs here: answer now; the used set (its memory: up to GiBs to delete) goes after.
        _later(_discard, sink, set_dir)
        answered = True
        return web.json_response(status.to_dict())
    finally:
        tar_path.unlink(missing_ok=True)
        if not answered:
            await asyncio.to_thread(_discard, sink, set_dir)


def _discard(sink: pageserver.Sink | None, set_dir: pathlib.Path) -> None:
    """Close a migration's page server (if any) and delete its received set."""
    if sink is not None:
        sink.close()
    shutil.rmtree(set_dir, ignore_errors=True)


def _later(work: collections.abc.Callable[..., None], *args: Any) -> None:
    """Run blocking clean-up work in the loop's thread pool, without waiting for it (the pool holds it)."""
    asyncio.get_running_loop().run_in_executor(None, work, *args)


async def _open_page_server(request: web.Request) -> web.Response:
    """A CRIU page server (TLS, cluster CA) for one incoming stop-and-copy migration of the job named in
    the body ({"job": NAME}): {"id", "page_server": "ADDRESS:PORT"}; 404 if this agent has no page streams."""
    m = request.app[MANAGER]
    name = str((await request.json()).get("job", ""))
    jobs.Job(name=name, args=("x",))  # validates the name before it becomes a path
    if not pageserver.enabled(m):
        return web.json_response({"error": "page streams are not enabled on this agent"}, status=404)
    sink = await asyncio.to_thread(pageserver.open_sink, m, name)
    log.info("page server %s for %s from %s", sink.page_server, name, _peer(request))
    return web.json_response({"id": sink.id, "page_server": sink.page_server})


async def _drop_page_server(request: web.Request) -> web.Response:
    """Close a page server its source will not use."""
    found = await asyncio.to_thread(pageserver.drop_sink, request.app[MANAGER], request.match_info["id"])
    return web.json_response({"dropped": found}, status=200 if found else 404)


async def _migration_status(request: web.Request) -> web.Response:
    """Whether the set with this digest was restored here, and its job's state: a source whose
    answer was lost asks this before it rolls back, so the job never runs twice."""
    name = request.app[RESTORED].get(request.match_info["digest"].lower())
    if name is None:
        return web.json_response({"error": "no such migration restored here"}, status=404)
    status = await asyncio.to_thread(request.app[MANAGER].status, name)
    return web.json_response(status.to_dict())
