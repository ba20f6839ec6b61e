"""mosctl: read the MOSIX state of a node (status, localstatus) and translate node numbers (whois)."""

from __future__ import annotations

import datetime

from mosix.api import node
from mosix.cli import common, nodestate, output, usage
from mosix.client import client, local

USAGE = (
    """usage: mosctl status [{node-number|ip-address|host-name}]
       mosctl localstatus
       mosctl whois {node-number}            the node's host name (or IP address)
       mosctl whois {ip-address|host-name}   the node's number
"""
    + common.HELP
)


def parse(argv: list[str]) -> tuple[str, list[str], common.Common]:
    opts = common.Common()
    words = common.rest(argv, opts)
    for word in words:
        if word.startswith("-"):
            raise usage.UsageError(word, "unknown option")
    if opts.help:
        return "help", [], opts
    if not words:
        raise usage.UsageError("", "which operation? (status, localstatus, whois)")
    op, args = words[0], words[1:]
    limits = {"status": (0, 1), "localstatus": (0, 0), "whois": (1, 1)}
    if op not in limits:
        raise usage.UsageError(op, "unknown operation (status, localstatus, whois)")
    low, high = limits[op]
    if not low <= len(args) <= high:
        raise usage.UsageError(
            op, "takes a node" if op == "whois" else "takes at most one node" if high else "takes no arguments"
        )
    return op, args, opts


def _local_node(api: client.Client) -> node.MosixNode:
    here = common.here()
    if here:
        return api.get_node(here)
    nodes = api.nodes()
    if isinstance(api.store, local.LocalStore) and nodes:
        return nodes[0]
    raise usage.Refused("this machine is not a MOSIX node: set MOSIX_NODE or name a node")


def _main(argv: list[str]) -> int:
    op, args, opts = parse(argv)
    if op == "help":
        print(USAGE)
        return 0
    api = opts.connect()
    if op == "whois":
        found = api.get_node(args[0])
        print(found.spec.hostname or found.name if args[0].isdigit() else found.spec.number)
        return 0
    target = api.get_node(args[0]) if args else _local_node(api)
    if opts.output != "table":
        output.objects([target.wire()], opts.output)
        return 0
    alive = nodestate.is_alive(target, datetime.datetime.now(datetime.UTC), api.get_cluster().spec.dead_after_seconds)
    print(nodestate.status_text(target, alive=alive, local=op == "localstatus"), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("mosctl", USAGE, _main, argv)
