"""The agent's user API: a job's output and input for its Kubernetes users, on a port of its own.

The peer API (server.py) takes only certificates of the mosix cluster CA; this one takes the users'
own Kubernetes credentials, checked by the API server (delegated.py), and serves only jobs whose home
is this node:

    GET  /namespaces/{ns}/mosixjobs/{name}/log?stream=stdout|stderr&offset=N[&process=I][&wait=S]
         the kept output from offset N; needs `get` on mosixjobs/log (the job's namespace and name).
         With wait, an answer that would be empty is held up to S seconds, until output arrives or the
         job finishes (X-Mosix-Held says which): followers get output as it comes without polling.
    POST /namespaces/{ns}/mosixjobs/{name}/input[?end=1]
         the body appended to the job's input (end=1: the input ends); needs `create` on mosixjobs/input

401 without credentials the API server accepts, 403 when it does not allow the request (both logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from mosix.agent import delegated, errors, homeio, tls
from mosix.api import job, meta

log = logging.getLogger(__name__)

RESOURCE = "mosixjobs"
HOME_TTL = 30.0  # how long "this job's home is here" is believed without asking again
MAX_WAIT = 30.0  # the longest a log request with nothing to answer yet is held (?wait=SECONDS)
HELD_HEADER = "X-Mosix-Held"  # on an answer to ?wait: "held", or "finished" (the job ended: nothing more will come)


@dataclasses.dataclass(frozen=True)
class Permission:
    """What a request needs, as a SubjectAccessReview asks it (and a Role grants it)."""

    verb: str
    subresource: str


LOG = Permission("get", "log")
INPUT = Permission("create", "input")

IsHome = Callable[[str, str], bool]  # (namespace, name) -> is this node the job's home?

REVIEWER: web.AppKey[delegated.Reviewer] = web.AppKey("reviewer", delegated.Reviewer)
HOME: web.AppKey[homeio.HomeOutput] = web.AppKey("home", homeio.HomeOutput)
IS_HOME: web.AppKey[IsHome] = web.AppKey("is_home")
HOLDING: web.AppKey[set[asyncio.Event]] = web.AppKey("holding", set)  # each held request's wake-up
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def app(home: homeio.HomeOutput, reviewer: delegated.Reviewer, is_home: IsHome) -> web.Application:
    a = web.Application(middlewares=[_errors], client_max_size=2 * homeio.CHUNK)
    a[HOME], a[REVIEWER], a[IS_HOME], a[HOLDING] = home, reviewer, is_home, set()
    a.on_shutdown.append(_release_held)  # a stopping agent answers held requests at once, not after their wait
    a.add_routes([
        web.get("/namespaces/{namespace}/mosixjobs/{name}/log", _log),
        web.post("/namespaces/{namespace}/mosixjobs/{name}/input", _input),
    ])
    return a


def server_context(ident: tls.Identity, client_ca: str | None) -> ssl.SSLContext:
    """TLS with the agent's serving certificate; a client certificate is asked for (not required) and
    verified against the cluster's client CA, when the API server publishes one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # trusts no CA but the one given (not the system's)
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_ca:
        ctx.load_verify_locations(cadata=client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def home_check(get_job: Callable[[str], job.MosixJob], me: str) -> IsHome:
    """Whether a job's home is node `me`, asked of the store (the agent reads every job) and remembered
    for a while."""
    known: dict[tuple[str, str], float] = {}

    def is_home(namespace: str, name: str) -> bool:
        if known.get((namespace, name), 0.0) > time.monotonic():
            return True
        try:
            j = get_job(f"{namespace}/{name}")
        except Exception:  # not found or unreachable: not a job we serve
            return False
        if (j.status.home_node or j.spec.home_node) != me:
            return False
        known[(namespace, name)] = time.monotonic() + HOME_TTL
        return True

    return is_home


def start(run: Callable[[Coroutine[Any, Any, web.AppRunner]], web.AppRunner], api_client: Any,
          get_job: Callable[[str], job.MosixJob], *, me: str, address: str, port: int, ident: tls.Identity,
          home: homeio.HomeOutput) -> web.AppRunner:
    """Serves the user API on address:port (in the agent's asyncio loop, through `run`)."""
    context = server_context(ident, delegated.client_ca(api_client))
    return run(serve(address, port, context, home=home, reviewer=delegated.Reviewer(api_client),
                     is_home=home_check(get_job, me)))


async def serve(address: str, port: int, context: ssl.SSLContext, *, home: homeio.HomeOutput,
                reviewer: delegated.Reviewer, is_home: IsHome) -> web.AppRunner:
    runner = web.AppRunner(app(home, reviewer, is_home), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port, ssl_context=context).start()
    log.info("user API on https://%s:%d", address, port)
    return runner


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    log.warning("user API refused %s %s from %s: %s", request.method, request.path, request.remote, message)
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except errors.JobError as e:
        return web.json_response({"error": str(e)}, status=409)
    except (errors.AgentError, ValueError, KeyError) as e:
        return web.json_response({"error": str(e)}, status=400)


async def _allowed(request: web.Request, need: Permission) -> web.Response | None:
    """None when the caller may do `need` to the job named in the path and its home is here; else the refusal."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    if not (NAME.match(namespace) and NAME.match(name)):
        return _refuse(request, 400, f"bad namespace or job name {namespace!r}/{name!r}")
    reviewer = request.app[REVIEWER]
    header = request.headers.get("Authorization", "")
    who: delegated.Subject | None = None
    if header.startswith("Bearer "):
        who = await asyncio.to_thread(reviewer.authenticate, header.removeprefix("Bearer ").strip())
        if who is None:
            return _refuse(request, 401, "the Kubernetes API server did not accept the bearer token")
    else:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        who = delegated.subject_of_certificate(peercert) if peercert else None
    if who is None:
        return _refuse(request, 401, "authenticate with a Kubernetes bearer token or a client certificate of the "
                                     "cluster's client CA")
    verdict = await asyncio.to_thread(lambda: reviewer.authorize(
        who, need.verb, group=meta.GROUP, resource=RESOURCE, subresource=need.subresource, namespace=namespace,
        name=name))
    if not verdict.allowed:
        because = f": {verdict.reason}" if verdict.reason else ""
        return _refuse(request, 403, f"user {who.user!r} may not {need.verb} {RESOURCE}/{need.subresource} "
                                     f"{name!r} in namespace {namespace!r}{because}")
    if not await asyncio.to_thread(request.app[IS_HOME], namespace, name):
        return _refuse(request, 404, f"job {namespace}/{name} does not have its home on this node")
    return None


async def _log(request: web.Request) -> web.Response:
    refused = await _allowed(request, LOG)
    if refused is not None:
        return refused
    q = request.query
    key = f"{request.match_info['namespace']}/{request.match_info['name']}"
    process = q.get("process")
    if process is not None:
        if not process.isdigit():
            raise ValueError(f"process {process!r}: a process index")
        key += f"_{process}"  # the agents' name for a process's output (a gang or -S file)
    stream, offset, wait = q.get("stream", "stdout"), int(q.get("offset", "0")), float(q.get("wait", "0"))
    if not 0 <= wait <= MAX_WAIT:
        raise ValueError(f"wait={wait}: seconds to hold an empty answer, 0 to {MAX_WAIT:g}")
    home = request.app[HOME]
    if wait == 0:
        data = await asyncio.to_thread(home.read, key, stream, offset)
        return web.Response(body=data, content_type="application/octet-stream")
    data = await _held(request, key, stream, offset, wait)
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={HELD_HEADER: "finished" if home.finished(key) else "held"})


async def _release_held(a: web.Application) -> None:
    for wake in a[HOLDING]:
        wake.set()


async def _held(request: web.Request, key: str, stream: str, offset: int, wait: float) -> bytes:
    """The output from offset; if there is none yet, what arrives within `wait` seconds: the answer goes as
    soon as the job's output grows (any stream of it or of its processes: a follower of all wakes up) or the
    job finishes."""
    home, holding = request.app[HOME], request.app[HOLDING]
    loop = asyncio.get_running_loop()
    grew = asyncio.Event()
    holding.add(grew)

    def changed() -> None:  # in the thread that appended
        loop.call_soon_threadsafe(grew.set)

    stop = home.listen(key, changed)
    try:
        data = await asyncio.to_thread(home.read, key, stream, offset)
        if data or home.finished(key):
            return data
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(grew.wait(), wait)
        return await asyncio.to_thread(home.read, key, stream, offset)
    finally:
        stop()
        holding.discard(grew)


async def _input(request: web.Request) -> web.Response:
    refused = await _allowed(request, INPUT)
    if refused is not None:
        return refused
    key = f"{request.match_info['namespace']}/{request.match_info['name']}"
    data = await request.read()
    home = request.app[HOME]
    size = await asyncio.to_thread(home.add_input, key, data) if data else 0
    if request.query.get("end") == "1":
        await asyncio.to_thread(home.end_input, key)
    return web.json_response({"size": size})
