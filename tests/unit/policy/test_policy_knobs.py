"""Every MosixCluster balancing knob reaches the policy and changes what it decides."""

from __future__ import annotations

from mosix.api import cluster
from mosix.controller import views
from mosix.policy import balancing, decisions, snapshot

NOW = 1000.0
LOAD = decisions.MigrationReason.LOAD


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def running(name: str, on: str = "n1", **kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {
        "state": snapshot.JobState.RUNNING,
        "node": on,
        "home": "n1",
        "started_at": NOW - 100.0,
    }
    fields.update(kw)
    return snapshot.JobView(name=name, **fields)  # type: ignore[arg-type]


def moves(
    nodes: list[snapshot.NodeView],
    jobs: list[snapshot.JobView],
    conf: cluster.BalancingPolicy,
) -> list[tuple[str, str, str]]:
    """The balancer's moves with `conf` given as a MosixCluster would give it (through views)."""
    spec = cluster.MosixClusterSpec(balancing=conf)
    view = views.cluster_view(cluster.MosixCluster(spec=spec))
    out = balancing.balance(snapshot.Snapshot(tuple(nodes), tuple(jobs), view, NOW))
    return [(m.job, m.source, m.target) for m in out]


def test_defaults_equal_the_policy_defaults() -> None:
    """Surfacing the knobs changed nothing for a cluster that sets none."""
    assert views.cluster_view(cluster.MosixCluster()) == snapshot.ClusterView()


def test_min_gain() -> None:
    nodes, jobs = [node(1, load=1), node(2, speed=1.3)], [running("a")]
    assert moves(nodes, jobs, cluster.BalancingPolicy(min_gain=0.2)) == [("a", "n1", "n2")]
    assert moves(nodes, jobs, cluster.BalancingPolicy(min_gain=0.5)) == []


def test_hysteresis() -> None:
    nodes, jobs = [node(1, load=1), node(2, speed=4.0)], [running("a", last_migration=NOW - 20.0)]
    assert moves(nodes, jobs, cluster.BalancingPolicy(hysteresis_seconds=30)) == []
    assert moves(nodes, jobs, cluster.BalancingPolicy(hysteresis_seconds=10)) == [("a", "n1", "n2")]


def test_fixed_migration_cost() -> None:
    """A job 10 s old saves about 7.5 s on a node 4x faster: worth 1 s of migration, not 20 s."""
    nodes, jobs = [node(1, load=1), node(2, speed=4.0)], [running("a", started_at=NOW - 10.0)]
    assert moves(nodes, jobs, cluster.BalancingPolicy(migration_cost_seconds=1)) == [("a", "n1", "n2")]
    assert moves(nodes, jobs, cluster.BalancingPolicy(migration_cost_seconds=20)) == []


def test_migration_cost_per_mb() -> None:
    """The same job with 4000 MB: 4 s to copy at 1000 MB/s, 40 s at 100 MB/s."""
    nodes = [node(1, load=1), node(2, speed=4.0, memory_free_mb=30000)]
    jobs = [running("a", started_at=NOW - 10.0, memory_mb=4000)]
    assert moves(nodes, jobs, cluster.BalancingPolicy(migration_mb_per_second=1000)) == [("a", "n1", "n2")]
    assert moves(nodes, jobs, cluster.BalancingPolicy(migration_mb_per_second=100)) == []


def test_memory_reserve() -> None:
    nodes = [node(1, load=1, memory_free_mb=500), node(2, load=1)]
    jobs = [running("a", memory_mb=1000), running("b", on="n2", locked=True)]
    assert moves(nodes, jobs, cluster.BalancingPolicy(memory_reserve_mb=256)) == []
    assert moves(nodes, jobs, cluster.BalancingPolicy(memory_reserve_mb=1000)) == [("a", "n1", "n2")]


def test_sources_per_round() -> None:
    """Two slow busy nodes, two fast idle ones: examining one source per round moves one job."""
    nodes = [node(1, load=1), node(2, load=1), node(3, speed=4.0), node(4, speed=4.0)]
    jobs = [running("a"), running("b", on="n2", home="n2")]
    assert len(moves(nodes, jobs, cluster.BalancingPolicy(sources_per_round=256))) == 2
    assert len(moves(nodes, jobs, cluster.BalancingPolicy(sources_per_round=1))) == 1


def test_knobs_are_validated_at_the_edge() -> None:
    import pydantic
    import pytest

    for bad in ({"migrationMbPerSecond": 0}, {"migrationCostSeconds": -1}, {"sourcesPerRound": 0}, {"minGain": -0.1}):
        with pytest.raises(pydantic.ValidationError):
            cluster.BalancingPolicy.model_validate(bad)
