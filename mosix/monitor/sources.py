"""The clusters a monitor watches: the shared options' cluster, or those of mmon -c; and one read of each."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Callable

from mosix.cli import common, usage
from mosix.client import client, local, store
from mosix.monitor import views

CLUSTERS_HELP = """  -c CLUSTER[,CLUSTER...]  watch several clusters, one at a time (< and > switch); a CLUSTER is
                    local          the local cluster of `mosix up` ($MOSIX_STATE)
                    local:DIR      a local cluster kept in DIR
                    FILE           the current context of the kubeconfig FILE
                    FILE@CONTEXT   a context of the kubeconfig FILE
                    @CONTEXT       a context of the default kubeconfig (--kubeconfig, $MOSIX_KUBECONFIG)
                    CONTEXT        the same, when no file of that name exists"""

OPTIONS_HELP = "".join(f"{line}\n" for line in common.HELP.splitlines() if "--output" not in line)  # no -o: a screen


@dataclasses.dataclass
class Source:
    """One cluster: a label for the screen and how to connect (once, on first use)."""

    label: str
    connect: Callable[[], client.Client]
    _client: client.Client | None = None

    def client(self) -> client.Client:
        if self._client is None:
            self._client = self.connect()
        return self._client


def from_common(opts: common.Common) -> Source:
    """The cluster the shared options name (the local one when it is up, as every command does)."""
    if opts.local:
        label = "local"
    elif opts.kubeconfig or opts.context:
        label = "@".join(x for x in (opts.kubeconfig, opts.context) if x)
    else:
        label = "default"
    return Source(label, opts.connect)


def _local_at(directory: str) -> Callable[[], client.Client]:
    return lambda: client.Client(local.LocalStore(pathlib.Path(directory)))


def parse_one(spec: str, base: common.Common) -> Source:
    """One -c word (see CLUSTERS_HELP)."""
    if spec == "local":
        return Source("local", common.Common(local=True).connect)
    if spec.startswith("local:"):
        directory = spec.removeprefix("local:")
        if not directory:
            raise usage.UsageError("-c", "local: needs a directory, e.g. local:/var/lib/mosix")
        return Source(spec, _local_at(directory))
    path, at, context = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if at and not context:
        raise usage.UsageError("-c", f"{spec!r}: a context name must follow @")
    if at and not path:
        opts = common.Common(kubeconfig=base.kubeconfig, context=context, namespace=base.namespace)
    elif at:
        opts = common.Common(kubeconfig=path, context=context, namespace=base.namespace)
    elif pathlib.Path(spec).exists() or "/" in spec:
        opts = common.Common(kubeconfig=spec, namespace=base.namespace)
    else:
        opts = common.Common(kubeconfig=base.kubeconfig, context=spec, namespace=base.namespace)
    return Source(spec, opts.connect)


def parse_list(text: str, base: common.Common) -> list[Source]:
    """-c's comma-separated list; spaces after commas are allowed (the tutorial writes them)."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise usage.UsageError("-c", "needs at least one cluster")
    return [parse_one(w, base) for w in words]


def snapshot(api: client.Client, now: datetime.datetime | None = None) -> views.Snapshot:
    """One read of the cluster: its nodes and its dead-after setting."""
    nodes = tuple(api.nodes())
    dead_after = api.get_cluster().spec.dead_after_seconds
    return views.Snapshot(nodes, now or datetime.datetime.now(datetime.UTC), dead_after)


def has_node(api: client.Client, host: str) -> bool:
    """Whether the cluster has a node of that name (object name, host name or its first label)."""
    for n in api.nodes():
        names = {n.name, n.spec.hostname or "", (n.spec.hostname or "").split(".")[0], n.name.split(".")[0]}
        if host in names:
            return True
    return False


def find_host(found: list[Source], host: str) -> int:
    """Which cluster has the node `host` (mmon -h): the first that answers yes; clusters that fail are skipped."""
    failures = []
    for i, s in enumerate(found):
        try:
            if has_node(s.client(), host):
                return i
        except store.StoreError as e:
            failures.append(f"{s.label}: {e}")
    where = ", ".join(s.label for s in found)
    more = f" ({'; '.join(failures)})" if failures else ""
    raise store.StoreError(f"no node named {host!r} in {where}{more}")
