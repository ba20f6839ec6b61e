"""Options every command shares: which cluster to talk to, and how to print."""

from __future__ import annotations

import dataclasses
import os

from mosix.cli import usage
from mosix.client import client, local, store

OUTPUTS = ("table", "json", "yaml")
HELP = """cluster options (every command):
  --kubeconfig FILE   talk to the Kubernetes cluster of this kubeconfig (or $MOSIX_KUBECONFIG)
  --context NAME      kubeconfig context
  --namespace NS      namespace of the jobs (Kubernetes; or $MOSIX_NAMESPACE)
  --local             talk to the local cluster of `mosix up` (the default when it is up)
  -o, --output FMT    table (default), json or yaml"""


@dataclasses.dataclass
class Common:
    """Where to connect and how to print."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False  # Kubernetes: list the jobs of every namespace, named NAMESPACE/NAME (mosps -A)
    local: bool = False
    output: str = "table"
    help: bool = False

    def connect(self) -> client.Client:
        """The local cluster when asked or when it is up; else Kubernetes."""
        kubeconfig = self.kubeconfig or os.environ.get("MOSIX_KUBECONFIG")
        if self.local or (not kubeconfig and not self.context and _local_is_up()):
            return client.Client(local.LocalStore())
        try:
            from mosix.client import kube

            namespace = kube.ALL_NAMESPACES if self.all_namespaces else (
                self.namespace or os.environ.get("MOSIX_NAMESPACE") or None)
            return client.Client(kube.KubeStore(kubeconfig, self.context, namespace))
        except Exception as e:  # kubernetes' config loader raises several unrelated types
            raise store.StoreError(
                f"no cluster to talk to: no local cluster is up (`mosix up`) and Kubernetes "
                f"could not be configured ({e})"
            ) from e


def _local_is_up() -> bool:
    return (local.default_state_dir() / "state.db").exists()


def take(argv: list[str], i: int, common: Common, *, allow_output: bool = True) -> int:
    """Consumes one shared option at argv[i]; returns how many words it took (0: not one of ours)."""
    word = argv[i]
    name, eq, attached = word.partition("=")
    valued = {"--kubeconfig": "kubeconfig", "--context": "context", "--namespace": "namespace"}
    if allow_output:
        valued |= {"--output": "output", "-o": "output"}
    if name in valued:
        if eq:
            value, used = attached, 1
        elif i + 1 < len(argv):
            value, used = argv[i + 1], 2
        else:
            raise usage.UsageError(name, "needs a value")
        if not value:
            raise usage.UsageError(name, "needs a value")
        if valued[name] == "output" and value not in OUTPUTS:
            raise usage.UsageError(name, f"unknown output format {value!r} (choose {', '.join(OUTPUTS)})")
        setattr(common, valued[name], value)
        return used
    if word == "--local":
        common.local = True
        return 1
    if word == "--help":
        common.help = True
        return 1
    return 0


def rest(argv: list[str], common: Common, *, allow_output: bool = True) -> list[str]:
    """The words that are not shared options, in their order: what the command itself parses."""
    words: list[str] = []
    i = 0
    while i < len(argv):
        used = take(argv, i, common, allow_output=allow_output)
        if used:
            i += used
        else:
            words.append(argv[i])
            i += 1
    return words


def job_id(word: str, example: str = "-J20") -> int:
    """-J{id}: a job id attached to the flag."""
    if not word[2:].isdigit():
        raise usage.UsageError("-J", f"needs a job id attached, e.g. {example} (got {word!r})")
    return int(word[2:])


def here() -> str | None:
    """The node this command runs on, for 'here' in tables: $MOSIX_NODE."""
    return os.environ.get("MOSIX_NODE") or None
