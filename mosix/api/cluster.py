"""MosixCluster: the cluster and grid configuration (/etc/mosix, setpe), one per cluster."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mosix.api import meta

DEFAULT_NAME = "default"


class NodeSpan(meta.Model):
    """A run of nodes named in the configuration: 'first - last' in setpe."""

    first: str = Field(min_length=1, description="First node (host name or IP).")
    last: str | None = Field(default=None, description="Last node of the run; unset: first alone.")


class GridPeer(NodeSpan):
    """Nodes from the rest of the grid (setpe -R), with what we allow towards them."""

    cluster: str | None = Field(default=None, description="Name of the peer cluster.")
    pri: int = Field(default=50, ge=0, le=65535, description="Priority we give that cluster: the lower the better.")
    proximate: bool = Field(default=False, description="There is a very fast network to those nodes.")
    outsider: bool = Field(default=False, description="Processes of class 0 cannot migrate there.")
    dontgo: bool = Field(default=False, description="Local processes cannot migrate there.")
    dont_take: bool = Field(default=False, description="We take no guests from there.")
    kubeconfig_secret: str | None = Field(default=None, description="Secret with a kubeconfig for that cluster.")


class QueuePolicy(meta.Model):
    """The shared queue's defaults."""

    default_priority: int = Field(
        default=50, ge=0, le=65535, description="Priority of a queued job that names none (mosrun -q)."
    )
    max_running: int | None = Field(
        default=None, ge=1, description="Most queued jobs running at once; unset: as many as nodes fit."
    )


class FreezingPolicy(meta.Model):
    """When to freeze processes for load (reason A)."""

    load_limits: dict[str, float] = Field(
        default_factory=lambda: {"0": 4.0},
        description="Per grid class: freeze that class's processes on a node whose load per CPU passes this.",
    )
    directory: str = Field(
        default="/var/lib/mosix/freeze", min_length=1, description="Where frozen memory images are kept on each node."
    )


class BalancingPolicy(meta.Model):
    """The load balancer's knobs."""

    interval_seconds: float = Field(default=2.0, gt=0, le=3600, description="How often to look for better placements.")
    min_gain: float = Field(
        default=0.2, ge=0, le=100, description="Move only when the expected speedup exceeds this fraction."
    )
    hysteresis_seconds: float = Field(
        default=30.0, ge=0, le=86400, description="A job that moved stays put at least this long."
    )
    memory_reserve_mb: int = Field(
        default=256, ge=0, description="Usher processes away when free memory falls below this."
    )
    migration_cost_seconds: float = Field(
        default=1.0, ge=0, le=3600,
        description="Expected fixed cost of one migration (freeze, transfer setup, restore) in seconds.",
    )
    migration_mb_per_second: float = Field(
        default=1000.0, gt=0, le=1_000_000,
        description="Expected memory transfer rate of a migration: each MB of the job adds 1/this seconds of cost.",
    )
    sources_per_round: int = Field(
        default=256, ge=1, le=100_000,
        description="Most nodes the balancer examines per round, slowest first; bounds a round on a big cluster.",
    )


class MosixClusterSpec(meta.Model):
    """The cluster's nodes, its grid peers and its policies."""

    cluster_name: str = Field(default="mosix", min_length=1, description="This cluster's name in the grid.")
    nodes: list[NodeSpan] = Field(default_factory=list, description="Nodes in this cluster (setpe -r).")
    grid: list[GridPeer] = Field(default_factory=list, description="Nodes from the rest of the grid (setpe -R).")
    queue: QueuePolicy = Field(default_factory=QueuePolicy, description="Queue defaults.")
    freezing: FreezingPolicy = Field(default_factory=FreezingPolicy, description="Freezing under load.")
    balancing: BalancingPolicy = Field(default_factory=BalancingPolicy, description="Load balancing.")
    dead_after_seconds: float = Field(default=15.0, gt=0, description="A node silent this long is dead (mon d).")


class MosixClusterStatus(meta.Model):
    """What the control plane observed."""

    nodes_alive: int = Field(default=0, ge=0, description="Nodes reporting.")
    nodes_dead: int = Field(default=0, ge=0, description="Nodes silent past deadAfterSeconds.")
    queued: int = Field(default=0, ge=0, description="Jobs waiting in the queue.")
    running: int = Field(default=0, ge=0, description="Jobs running.")
    leader: str | None = Field(default=None, description="The active control plane.")
    conditions: list[meta.Condition] = Field(default_factory=list, description="Observed facts with their reasons.")


class MosixCluster(meta.Resource):
    """The MOSIX configuration of one cluster, cluster-scoped; normally one, named default."""

    KIND: ClassVar[str] = "MosixCluster"
    PLURAL: ClassVar[str] = "mosixclusters"
    SINGULAR: ClassVar[str] = "mosixcluster"
    SHORT_NAMES: ClassVar[list[str]] = ["mc"]
    NAMESPACED: ClassVar[bool] = False

    kind: str = Field(default="MosixCluster")
    metadata: meta.ObjectMeta = Field(default_factory=lambda: meta.ObjectMeta(name=DEFAULT_NAME))
    spec: MosixClusterSpec = Field(default_factory=MosixClusterSpec)
    status: MosixClusterStatus = Field(default_factory=MosixClusterStatus)
