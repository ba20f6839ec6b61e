"""MosixNode: one node's MOSIX state, written by its agent (mosctl status, mon)."""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import Field

from mosix.api import meta


class NodeState(enum.StrEnum):
    """mosctl status "Status:"."""

    RUNNING = "Running Normally"
    BLOCKED = "Blocked"
    EXPELLING = "Expelling Guests"
    DOWN = "Down"


class DaemonState(enum.StrEnum):
    UP = "Up"
    DOWN = "Down"


class MosixNodeSpec(meta.Model):
    """The node's identity and the policies its administrator set."""

    number: int = Field(ge=1, le=65535, description="The node's logical MOSIX number (mosctl whois).")
    address: str = Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$", description="IP address of the node's agent.")
    hostname: str | None = Field(default=None, description="Host name, when it differs from the object name.")
    agent_port: int = Field(default=7341, ge=1, le=65535, description="Port of the agent's authenticated API.")
    metrics_port: int = Field(default=9341, ge=1, le=65535, description="Port of the agent's Prometheus metrics.")
    user_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of the agent's user API (a job's output and input, for users authenticated and "
        "authorized by the Kubernetes API server); unset: none.")
    serving_ca: str | None = Field(
        default=None, max_length=16384,
        description="PEM certificate of the CA that signs the agent's serving certificate (users verify the "
        "user API with it).")
    block: bool = Field(default=False, description="Accept no new guest processes (mosctl block).")
    expel: bool = Field(
        default=False, description="Send guest processes away, freezing those that cannot go (reason E)."
    )
    max_guests: int = Field(default=10, ge=0, le=100000, description="Most guest processes from the grid at once.")
    features: list[str] = Field(default_factory=list, description="Node features (setpe 'no features' when empty).")


class Memory(meta.Model):
    """Available and total, in MB."""

    available_mb: int = Field(default=0, ge=0, description="Free for new processes, MB.")
    total_mb: int = Field(default=0, ge=0, description="Total, MB.")


class Daemons(meta.Model):
    """mosctl localstatus "Daemons:"."""

    master: DaemonState = Field(default=DaemonState.DOWN, description="Master Daemon.")
    mosix: DaemonState = Field(default=DaemonState.DOWN, description="MOSIX Daemon (the node agent).")
    queue: DaemonState = Field(default=DaemonState.DOWN, description="Queue Manager (the control plane).")
    remote: DaemonState = Field(default=DaemonState.DOWN, description="Remote Daemon (the migration API).")


class Guests(meta.Model):
    """Guest processes from the grid: running / maximum."""

    running: int = Field(default=0, ge=0, description="Guest processes running here.")
    max: int = Field(default=10, ge=0, description="Most allowed at once.")


class MosixNodeStatus(meta.Model):
    """The mosctl status fields, refreshed by the node's agent every few seconds."""

    state: NodeState = Field(default=NodeState.DOWN, description="Status: Running Normally, Blocked, ...")
    load: float = Field(default=0.0, ge=0, description="Load, in CPU-bound processes (mon l).")
    speed: int = Field(default=0, ge=0, description="CPU speed in MOSIX units (mmon s).")
    cpus: int = Field(default=0, ge=0, description="CPUs.")
    frozen: int = Field(default=0, ge=0, description="Frozen processes here (mon f).")
    util: int = Field(default=0, ge=0, le=100, description="Utilization in percent (mon u).")
    avail: bool = Field(default=False, description="Available to MOSIX.")
    procs: int = Field(default=0, ge=0, description="MOSIX processes running here.")
    accept: bool = Field(default=False, description="Welcomes processes from other nodes.")
    memory: Memory = Field(default_factory=Memory, description="Memory available/total (mon m).")
    swap: Memory = Field(default_factory=Memory, description="Swap available/total (mon m, pressed twice).")
    daemons: Daemons = Field(default_factory=Daemons, description="The node's MOSIX daemons.")
    guests: Guests = Field(default_factory=Guests, description="Guest processes from the grid.")
    local_procs: int = Field(default=0, ge=0, description="Local processes running here (mmon g).")
    read_kbps: float = Field(default=0.0, ge=0, description="Disk read rate, KB/s (mmon i).")
    write_kbps: float = Field(default=0.0, ge=0, description="Disk write rate, KB/s (mmon i).")
    net_in_kbps: float = Field(default=0.0, ge=0, description="Network in, KB/s (mmon o).")
    net_out_kbps: float = Field(default=0.0, ge=0, description="Network out, KB/s (mmon o).")
    version: str | None = Field(default=None, description="mosix version of the agent (mmon s).")
    boot_time: str | None = Field(default=None, description="When the node came up, for uptime (mmon s).")
    heartbeat: str | None = Field(default=None, description="Last time the agent reported; stale means dead (mon d).")
    conditions: list[meta.Condition] = Field(default_factory=list, description="Observed facts with their reasons.")


class MosixNode(meta.Resource):
    """A MOSIX node, cluster-scoped, named after its host."""

    KIND: ClassVar[str] = "MosixNode"
    PLURAL: ClassVar[str] = "mosixnodes"
    SINGULAR: ClassVar[str] = "mosixnode"
    SHORT_NAMES: ClassVar[list[str]] = ["mn"]
    NAMESPACED: ClassVar[bool] = False

    kind: str = Field(default="MosixNode")
    spec: MosixNodeSpec
    status: MosixNodeStatus = Field(default_factory=MosixNodeStatus)

    def alive(self, now: float, dead_after: float) -> bool:
        """Has the node's agent reported within `dead_after` seconds of `now` (epoch seconds), and not as down?"""
        beat = meta.seconds(self.status.heartbeat)
        return beat is not None and now - beat <= dead_after and self.status.state != NodeState.DOWN
