"""The node agent process: the authenticated agent API and the reconcile loop over the store.

`python -m mosix.agent --node-name node2 --address 127.0.0.2 --local-store DIR --tls-dir DIR`
(the local cluster), or `--kubeconfig FILE` / in-cluster (Kubernetes), or `--no-store` (the API
alone). TLS files in --tls-dir: ca.crt, and tls.crt/tls.key or <node>.crt/<node>.key.

The agent runs under its keeper (`mosix.agent.keeper`): this entry point execs the keeper, which
runs the agent (this same command line) as its child, restarts it if it dies, and keeps its jobs'
pipes open meanwhile; the restarted agent adopts its running jobs. --no-keeper runs the agent alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import ssl
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import prometheus_client

from mosix import stopping
from mosix.agent import (
    containers,
    criu,
    daemon,
    fdstore,
    gangs,
    homeio,
    images,
    keeper,
    metrics,
    migration,
    nodestatus,
    pageserver,
    postcopy,
    server,
    tls,
    unsupported,
    userapi,
)
from mosix.agent.homefs import exports, mounts
from mosix.api import job, meta, node
from mosix.client import client, local

T = TypeVar("T")
log = logging.getLogger("mosix.agent")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mosix-agent", description="The MOSIX node agent.")
    p.add_argument("--node-name", required=True, help="this node's name (its MosixNode)")
    p.add_argument("--node-number", type=int, default=None, help="logical MOSIX node number (default: from name)")
    p.add_argument("--address", required=True, help="IP address the agent's API listens on (127.0.0.N locally)")
    p.add_argument("--port", type=int, default=7341, help="port of the authenticated agent API")
    p.add_argument("--metrics-port", type=int, default=9341, help="Prometheus metrics port (0: off)")
    p.add_argument("--user-port", type=int, default=7342,
                   help="port of the user API: job output and input for Kubernetes users (0: off; not locally)")
    p.add_argument("--state-dir", type=pathlib.Path, default=None,
                   help="this agent's containers, checkpoints and runc state (default /var/lib/mosix/agent/NODE)")
    p.add_argument("--image-cache", type=pathlib.Path, default=images.DEFAULT_ROOT, help="shared image cache")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="registry to pull from over plain HTTP or unverified TLS (repeatable; for local registries)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local-store", type=pathlib.Path, help="state folder of the local cluster (mosix up)")
    where.add_argument("--kubeconfig", help="kubeconfig of the Kubernetes cluster (default: in-cluster)")
    where.add_argument("--no-store", action="store_true", help="serve the agent API only, with no control plane")
    p.add_argument("--cpus", type=int, default=None, help="CPUs to report (default: this machine's)")
    p.add_argument("--speed", type=int, default=None, help="speed to report in MOSIX units (default: measured)")
    p.add_argument("--shared-checkpoints", action="store_true",
                   help="checkpoint sets are on storage every node reads (the local cluster: one machine)")
    p.add_argument("--postcopy-above-mb", type=int, default=256,
                   help="migrate jobs with more resident memory than this by post-copy (default 256)")
    p.add_argument("--tls-dir", type=pathlib.Path, required=True, help="ca.crt and this agent's certificate and key")
    p.add_argument("--issue-from", type=pathlib.Path, help="cluster CA folder (ca.crt, ca.key) to issue our pair from")
    p.add_argument("--no-keeper", action="store_true",
                   help="run the agent alone, without the keeper (its jobs then die with it)")
    return p.parse_args(argv)


def number_of(name: str) -> int:
    digits = "".join(c for c in name if c.isdigit())
    if not digits:
        raise SystemExit(f"mosix-agent: --node-number: cannot derive a node number from {name!r}")
    return int(digits)


def identity(args: argparse.Namespace) -> tls.Identity:
    """The agent's TLS files: tls.crt/tls.key (the chart's Secret), else <node>.crt/.key, else issued now."""
    d = args.tls_dir
    for cert, key in (("tls.crt", "tls.key"), (f"{args.node_name}.crt", f"{args.node_name}.key")):
        if (d / cert).exists():
            return tls.Identity(ca=d / "ca.crt", cert=d / cert, key=d / key)
    if args.issue_from:
        src = args.issue_from
        ca = tls.Identity(ca=src / "ca.crt", cert=src / "ca.crt", key=src / "ca.key")
        return tls.issue(ca, d, args.node_name, (args.address,))
    raise SystemExit(f"mosix-agent: --tls-dir: no tls.crt or {args.node_name}.crt in {d}")


class Loop:
    """An asyncio loop in a thread: the API server lives there, and the reconcile loop submits to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="agent-api", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def use_postcopy(asked: job.MigrationMethod, rss_bytes: int, postcopy_above_mb: int) -> bool:
    """Post-copy when the user asked for it, or (Auto) when the job is large enough to be worth it."""
    if asked != job.MigrationMethod.AUTO:
        return asked == job.MigrationMethod.POST_COPY
    return rss_bytes > postcopy_above_mb * 1024 * 1024


def migrator(api: client.Client, manager: containers.Manager, loop: Loop, context: ssl.SSLContext,
             me: str, *, postcopy_above_mb: int) -> daemon.Migrate:
    """Carries out a status.targetNode (of a job, or of one process of a gang or commands file: its own
    container, its own entry of status.processes): to the peer agent by stop-and-copy, or by post-copy when
    asked (migrate --postcopy) or when its resident memory passes `postcopy_above_mb` (its freeze then
    no longer grows with memory); then records where it is."""

    def migrate(key: str, j: job.MosixJob, target: node.MosixNode, index: str | None = None) -> None:
        name = daemon.container_name(key) if index is None else gangs.container(daemon.container_name(key), index)
        proc = None if index is None else j.status.processes[index]
        ask = j.spec.migration if index is None else getattr(j.spec.processes.get(index), "migration", None)
        observed = j.status.observed_migration_serial if proc is None else proc.observed_migration_serial
        migrations = j.status.migrations if proc is None else proc.migrations
        pid = manager.status(name).pid
        rss = metrics.job_usage(nodestatus.descendants(pid))[1] if pid else 0
        requested = ask is not None and ask.serial == observed
        lazy = use_postcopy(ask.method if requested and ask else job.MigrationMethod.AUTO, rss, postcopy_above_mb)
        peer = f"https://{target.spec.address}:{target.spec.agent_port}"

        def record(fields: dict[str, Any], where: str) -> None:
            if index is None:
                api.patch_job_status(key, fields | {"where": where})
            else:
                api.patch_job_status(key, {"processes": {index: fields}})

        record({"phase": job.Phase.MIGRATING.value}, "migrating")
        reason = "Requested" if requested else "Policy"
        started = time.monotonic()
        try:
            result = loop.run(migration.migrate(manager, name, peer, context, lazy=lazy))
        except migration.MigrationFailed as e:
            metrics.FAILURES.labels(reason=reason, cause=metrics.failure_cause(e), node=me).inc()
            log.warning("%s stays on %s: %s", name, me, e)
            record({"phase": job.Phase.RUNNING.value, "targetNode": None,
                    "message": f"migration to {target.name} failed: {e}"}, me)
            return
        except unsupported.Unsupported as e:  # the agent's loop marks the job unmigratable
            metrics.FAILURES.labels(reason=reason, cause=metrics.failure_cause(e), node=me).inc()
            raise
        if index is None:  # its series are the target's now
            namespace, _, plain = key.rpartition("/")
            metrics.job_left(namespace or api.store.namespace, plain)
        metrics.MIGRATIONS.labels(reason, me).inc()
        metrics.FREEZE.observe(result.frozen_seconds)
        metrics.DURATION.observe(time.monotonic() - started)
        metrics.MOVED.labels(me).inc(result.bytes_sent)
        record({"phase": job.Phase.RUNNING.value, "node": target.name, "targetNode": None,
                "migrations": migrations + 1, "lastFreezeMs": round(result.frozen_seconds * 1000, 1),
                "lastMigrationTime": meta.now_rfc3339(), "origPid": result.peer_status.get("pid"),
                "message": None}, target.name)
        log.info("%s migrated %s → %s by %s, frozen %.3f s, %d bytes", name, me, target.name,
                 "post-copy" if lazy else "stop-and-copy", result.frozen_seconds, result.bytes_sent)

    return migrate


def state_dir(args: argparse.Namespace) -> pathlib.Path:
    return pathlib.Path(args.state_dir or pathlib.Path("/var/lib/mosix/agent") / args.node_name)


def exec_keeper(args: argparse.Namespace, argv: list[str]) -> None:
    """Become the keeper, which runs this same command line as its child (the agent)."""
    command = [sys.executable, "-m", "mosix.agent", *argv]
    os.execv(sys.executable, [sys.executable, "-m", "mosix.agent.keeper", "--state-dir", str(state_dir(args)),
                              "--", *command])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if not args.no_keeper and keeper.ENV_FD not in os.environ:
        exec_keeper(args, argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.node_name} %(levelname)s %(message)s")
    try:
        criu.check()
    except criu.CriuError as e:
        log.error("%s", e)
        return 1
    pageserver.raise_pipe_max_size()
    ident = identity(args)
    client_ctx = tls.client_context(ident)
    state = state_dir(args)
    homedirs = mounts.Mounter(url=f"https://{args.address}:{args.port}", identity=ident)
    manager = containers.Manager(state, images.Cache(args.image_cache, frozenset(args.insecure_registry)),
                                  node=args.node_name, homefs=homedirs, keeper=fdstore.FdStore.from_environment())
    adopted = manager.adopt()
    if adopted:
        log.info("agent %s adopted %d job(s) it had before a restart: %s", args.node_name, len(adopted),
                 ", ".join(adopted))
    served = exports.Exports()
    loop = Loop()
    postcopy.enable(manager, ident, args.address)
    home = homeio.HomeOutput(state / "home")
    runner = loop.run(server.serve(manager, args.address, args.port, tls.server_context(ident), client_ctx,
                                   home=home, homefs=served))
    log.info("agent %s serving on https://%s:%d", args.node_name, args.address, args.port)
    if args.metrics_port:
        for reason in ("Requested", "Policy"):  # zero series from the start, so rates and alerts have data
            metrics.MIGRATIONS.labels(reason, args.node_name)
            for cause in metrics.CAUSES:
                metrics.FAILURES.labels(reason=reason, cause=cause, node=args.node_name)
        metrics.MOVED.labels(args.node_name)
        prometheus_client.start_http_server(args.metrics_port, addr=args.address)
    stop = threading.Event()
    users = None
    stopping.stop_on_signals(stop)
    try:
        if args.no_store:
            while not stop.wait(1):
                pass
        else:
            if args.local_store:
                api = client.Client(local.LocalStore(args.local_store))
            else:
                from mosix.client import kube
                api = client.Client(kube.KubeStore(args.kubeconfig, namespace=kube.ALL_NAMESPACES))
                if args.user_port:
                    users = userapi.start(loop.run, getattr(api.store, "api").api_client, api.get_job,  # noqa: B009
                                          me=args.node_name, address=args.address, port=args.user_port,
                                          ident=ident, home=home)
            me = daemon.Identity(name=args.node_name, number=args.node_number or number_of(args.node_name),
                                 address=args.address, port=args.port, metrics_port=args.metrics_port,
                                 user_port=args.user_port if users else 0, serving_ca=ident.ca.read_text())
            sampler = nodestatus.Sampler(cpus=args.cpus or nodestatus.default_cpus(),
                                         speed=args.speed or nodestatus.measure_speed())
            agent = daemon.Agent(api, manager, me, sampler, migrator(api, manager, loop, client_ctx, args.node_name,
                                                                   postcopy_above_mb=args.postcopy_above_mb),
                                 shared_checkpoints=args.shared_checkpoints, home=home, homefs=served,
                                 remote_sink=lambda n: homeio.remote(n.spec.address, n.spec.agent_port, client_ctx),
                                 remote_input=lambda n: homeio.remote_input(n.spec.address, n.spec.agent_port,
                                                                            client_ctx))
            daemon.serve(agent, stop)
    finally:
        start = time.monotonic()
        loop.run(runner.cleanup(), timeout=10)
        if users is not None:
            loop.run(users.cleanup(), timeout=10)
        loop.stop()
        manager.close()
        log.info("agent %s stopped in %.1f s", args.node_name, time.monotonic() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
