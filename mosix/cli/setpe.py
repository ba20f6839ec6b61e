"""setpe -r / -R: the cluster's nodes, and the grid's, as the configuration lists them."""

from __future__ import annotations

from mosix.api import cluster, node
from mosix.cli import common, output, usage
from mosix.client import client

USAGE = (
    """usage: setpe -r     list the nodes in the local cluster
       setpe -R     list the nodes in the local cluster and the grid
"""
    + common.HELP
)


def parse(argv: list[str]) -> tuple[str, common.Common]:
    opts = common.Common()
    mode = ""
    for word in common.rest(argv, opts):
        if word in ("-r", "-R"):
            if mode and mode != word:
                raise usage.UsageError(word, "give -r or -R, not both")
            mode = word
        else:
            raise usage.UsageError(word, "unknown option" if word.startswith("-") else "unexpected argument")
    if opts.help:
        return "help", opts
    if not mode:
        raise usage.UsageError("", "give -r (this cluster) or -R (this cluster and the grid)")
    return mode, opts


def _span(first: str, last: str | None) -> str:
    return first if not last or last == first else f"{first} - {last}"


def _host(n: node.MosixNode) -> str:
    return n.spec.hostname or n.name


def node_spans(nodes: list[node.MosixNode]) -> list[str]:
    """Consecutive node numbers as 'first - last' runs, by host name."""
    spans: list[list[node.MosixNode]] = []
    for n in sorted(nodes, key=lambda n: n.spec.number):
        if spans and spans[-1][-1].spec.number + 1 == n.spec.number:
            spans[-1].append(n)
        else:
            spans.append([n])
    return [_span(_host(s[0]), _host(s[-1])) for s in spans]


def peer_line(peer: cluster.GridPeer) -> str:
    flags = [f"pri={peer.pri}"] + [
        name
        for name, on in (
            ("proximate", peer.proximate),
            ("outsider", peer.outsider),
            ("dontgo", peer.dontgo),
            ("dont_take", peer.dont_take),
        )
        if on
    ]
    return f"{_span(peer.first, peer.last)}: {','.join(flags)}"


def render(conf: cluster.MosixCluster, nodes: list[node.MosixNode], here: node.MosixNode | None, *, grid: bool) -> str:
    lines = []
    if here is not None:
        features = ",".join(here.spec.features) or "no features"
        lines.append(f"This MOSIX node is: {here.spec.address} ({here.spec.hostname or here.name}) ({features})")
    else:
        lines.append("This machine is not a MOSIX node")
    spans = [_span(s.first, s.last) for s in conf.spec.nodes] or node_spans(nodes)
    lines += ["", "Nodes in this cluster:", "=" * 22, *spans]
    if grid:
        lines += ["", "Nodes from the rest of the grid:", "=" * 32, *(peer_line(p) for p in conf.spec.grid)]
    return "\n".join(lines) + "\n"


def _main(argv: list[str]) -> int:
    mode, opts = parse(argv)
    if mode == "help":
        print(USAGE)
        return 0
    api: client.Client = opts.connect()
    conf = api.get_cluster()
    if opts.output != "table":
        output.objects([conf.wire()], opts.output)
        return 0
    nodes = api.nodes()
    here_ref = common.here()
    here = api.get_node(here_ref) if here_ref else None
    print(render(conf, nodes, here, grid=mode == "-R"), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("setpe", USAGE, _main, argv)
