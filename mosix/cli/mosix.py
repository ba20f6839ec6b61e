"""mosix: the local cluster (up, down, status)."""

from __future__ import annotations

import argparse
import datetime
import sys
import threading

from mosix.cli import common, homeinput, logs, nodestate, output, usage
from mosix.client import local
from mosix.local import cluster


def _layout(args: argparse.Namespace) -> cluster.Layout:
    return cluster.Layout(args.state or local.default_state_dir())


def _logs(args: argparse.Namespace) -> int:
    where = common.Common(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace,
                          local=args.local)
    api = where.connect()
    if args.stdin:  # attach: our input goes to the job too, until EOF here ends it
        if not api.get_job(args.job).spec.stdin:
            raise usage.Refused(f"job {args.job} was not started with mosrun -i: it takes no input")
        threading.Thread(target=homeinput.forward, args=(api, args.job), name="stdin", daemon=True).start()
    logs.follow(api, args.job, until_finished=args.follow or args.stdin)
    return 0


def show_nodes() -> int:
    """One table of every node (the local cluster, or Kubernetes with MOSIX_KUBECONFIG)."""
    api = common.Common().connect()
    now = datetime.datetime.now(datetime.UTC)
    dead_after = api.get_cluster().spec.dead_after_seconds
    rows = []
    for n in api.nodes():
        s = n.status
        alive = nodestate.is_alive(n, now, dead_after)
        rows.append([n.spec.number, n.name, n.spec.address, s.state.value if alive else "Dead", f"{s.load:.2f}",
                     s.speed, s.cpus, s.frozen, s.procs, f"{s.memory.available_mb}/{s.memory.total_mb}"])
    print(output.table(["NODE", "NAME", "ADDRESS", "STATUS", "LOAD", "SPEED", "CPUS", "FROZEN", "PROCS",
                        "MEM(MB)"], rows), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mosix", description="The local MOSIX cluster on this machine.")
    parser.add_argument("--state", default=None, help="state folder (default: $MOSIX_STATE or ~/.local/state/mosix)")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start N node agents on 127.0.0.1..N and the control loop, in the background")
    start.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for every node to report")
    start.add_argument("--cpus", type=int, default=1,
                       help="CPUs each node reports (default 1: nodes share this machine)")
    start.add_argument("--speed", type=int, default=None, help="speed each node reports (default: measured once)")
    sub.add_parser("down", help="stop the local cluster (its jobs and queue stay in the store)")
    sub.add_parser("status", help="which processes of the local cluster are running")
    sub.add_parser("nodes", help="the nodes and their load, memory and processes, once (like mon)")
    show = sub.add_parser("logs", help="a job's output, as its home node keeps it")
    show.add_argument("job", help="the job's id (its name)")
    show.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    show.add_argument("-i", "--stdin", action="store_true",
                      help="attach: also send our standard input to the job (started with mosrun -i); EOF ends it")
    show.add_argument("--kubeconfig", help="the Kubernetes cluster's kubeconfig (or $MOSIX_KUBECONFIG)")
    show.add_argument("--context", help="kubeconfig context")
    show.add_argument("--namespace", help="the job's namespace (or $MOSIX_NAMESPACE)")
    show.add_argument("--local", action="store_true", help="the local cluster (the default when it is up)")
    args = parser.parse_args(argv)
    if args.command == "up" and not 1 <= args.nodes <= 254:
        parser.error("--nodes: must be 1-254 (node N listens on 127.0.0.N)")
    layout = _layout(args)
    if args.command == "up":
        missing = cluster.up(layout, args.nodes, args.timeout, args.cpus, args.speed)
        if missing:
            print(f"mosix: nodes did not report within {args.timeout:.0f} s: {', '.join(missing)} "
                  f"(see {layout.logs})", file=sys.stderr)
            return 1
        print(f"mosix: local cluster up: {args.nodes} nodes on 127.0.0.1-{args.nodes}, state in {layout.state}")
        return 0
    if args.command == "down":
        stopped = cluster.down(layout)
        print(f"mosix: stopped {', '.join(stopped) or 'nothing (not running)'}")
        return 0
    if args.command == "nodes":
        return show_nodes()
    if args.command == "logs":
        return usage.run("mosix logs", "usage: mosix logs JOB [-f] [-i]",
                         lambda _: _logs(args), [])
    procs = cluster.running(layout)
    for name, pid in procs.items():
        print(f"{name}\t{pid}")
    return 0 if procs else 1
