"""views: MOSIX objects to policy views, and the cache that keeps them between rounds."""

from __future__ import annotations

import datetime

from mosix.api import cluster, job, meta, node
from mosix.controller import views
from mosix.policy import decide, snapshot

NOW = datetime.datetime(2026, 12, 2, 5, 0, tzinfo=datetime.UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()


def mosix_job(name: str, rv: str | None, **status: object) -> job.MosixJob:
    body = {
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": stamp(100),
            **({"resourceVersion": rv} if rv else {}),
        },
        "spec": {"command": ["testload"], "queue": {"priority": 20}, "placement": "Best"},
        "status": {"phase": "Queued", **status},
    }
    return job.MosixJob.model_validate(body)


def nodes() -> list[node.MosixNode]:
    return [
        node.MosixNode.model_validate(
            {
                "metadata": {"name": f"node{i}"},
                "spec": {"number": i, "address": f"127.0.0.{i}"},
                "status": {"heartbeat": stamp(1), "cpus": 2, "speed": 1000, "load": 1.0},
            }
        )
        for i in (1, 2)
    ]


def snap(jobs: dict[str, job.MosixJob], cache: views.JobViews | None = None) -> snapshot.Snapshot:
    return views.snapshot_of(jobs, nodes(), cluster.MosixCluster(), NOW.timestamp(), cache)


def test_cached_snapshots_equal_fresh_ones_as_jobs_change() -> None:
    cache = views.JobViews()
    jobs = {f"default/j{i}": mosix_job(f"j{i}", str(i)) for i in range(4)}
    assert snap(jobs, cache) == snap(jobs)
    jobs["default/j1"] = mosix_job("j1", "10", phase="Running", node="node2", startTime=stamp(2))
    jobs["default/j2"] = mosix_job("j2", "11", phase="Pending", node="node1", targetNode="node2")
    del jobs["default/j3"]
    jobs["default/j4"] = mosix_job("j4", "12", phase="Succeeded", node="node1")
    cached, fresh = snap(jobs, cache), snap(jobs)
    assert cached == fresh
    assert [n.load for n in fresh.nodes] == [1.0, 3.0]  # recent arrivals counted


def test_an_unchanged_job_is_not_mapped_again_and_a_changed_one_is() -> None:
    cache = views.JobViews()
    jobs = {"default/a": mosix_job("a", "1"), "default/b": mosix_job("b", "2")}
    first = cache.mapped(jobs)
    jobs["default/b"] = mosix_job("b", "3", phase="Running", node="node1", startTime=stamp(50))
    second = cache.mapped(jobs)
    assert second["default/a"] is first["default/a"]
    assert second["default/b"].view.node == "node1" and first["default/b"].view.node is None


def test_no_resource_version_no_caching_and_gone_jobs_are_forgotten() -> None:
    cache = views.JobViews()
    bare = {"default/a": mosix_job("a", None)}
    assert cache.mapped(bare)["default/a"] is not cache.mapped(bare)["default/a"]
    jobs = {"default/b": mosix_job("b", "5")}
    kept = cache.mapped(jobs)["default/b"]
    cache.mapped({})
    assert cache.mapped(jobs)["default/b"] is not kept


def test_arrivals_count_targets_recent_starts_and_pending() -> None:
    jobs = {
        "default/t": mosix_job("t", "1", phase="Migrating", node="node1", targetNode="node2"),
        "default/r": mosix_job("r", "2", phase="Running", node="node1", startTime=stamp(3)),
        "default/o": mosix_job("o", "3", phase="Running", node="node1", startTime=stamp(300)),
        "default/p": mosix_job("p", "4", phase="Pending", node="node2"),
        "default/f": mosix_job("f", "5", phase="Failed", node="node2", targetNode="node1"),
    }
    assert views.arrivals(jobs, NOW.timestamp()) == {"node2": 2, "node1": 1}
    assert meta.seconds(stamp(0)) == NOW.timestamp()


def test_the_cached_snapshot_comes_from_the_index_and_decides_as_a_fresh_one() -> None:
    """Rounds on the kept views: the snapshot carries the index, current, and every round decides
    what a round on a snapshot built afresh decides, as jobs start, run, finish, leave and arrive."""
    cache = views.JobViews()
    jobs = {f"default/q{i}": mosix_job(f"q{i}", f"{i}") for i in range(6)}
    rv = 100
    for step in range(4):
        cached, fresh = snap(jobs, cache), snap(jobs)
        assert cached.index is cache.index and cache.index.current(cached)
        assert cached == fresh and decide.decide(cached) == decide.decide(fresh)
        rv += 1
        started = f"default/q{step}"
        jobs[started] = mosix_job(f"q{step}", str(rv), phase="Running", node="node1", startTime=stamp(30))
        jobs.pop(f"default/q{step - 1}", None)  # the one started last round ended and went
        jobs[f"default/n{step}"] = mosix_job(f"n{step}", str(rv + 50))
    assert [j.name for j in snap(jobs, cache).jobs] == [j.name for j in snap(jobs).jobs]


def test_unchanged_node_views_are_kept_so_the_index_sees_which_changed() -> None:
    cache = views.JobViews()
    jobs = {"default/a": mosix_job("a", "1")}
    first = snap(jobs, cache)
    again = snap(jobs, cache)
    assert all(a is b for a, b in zip(first.nodes, again.nodes, strict=True))
    jobs["default/b"] = mosix_job("b", "2", phase="Pending", node="node2")  # an arrival on node2
    third = snap(jobs, cache)
    assert third.nodes[0] is first.nodes[0] and third.nodes[1] is not first.nodes[1]
    assert third.nodes[1].load == first.nodes[1].load + 1


def test_changed_jobs_are_those_mapped_afresh_or_patched_since_the_last_plan() -> None:
    cache = views.JobViews()
    jobs = {f"default/{n}": mosix_job(n, str(i)) for i, n in enumerate("abc", start=1)}
    cache.mapped(jobs)
    assert set(cache.changed(jobs)) == set(jobs)  # all new
    cache.planned(["default/a"], [])
    cache.mapped(jobs)
    assert set(cache.changed(jobs)) == {"default/a"}  # patched last round, whatever came of it
    jobs["default/b"] = mosix_job("b", "9", phase="Running", node="node1", startTime=stamp(5))
    cache.mapped(jobs)
    assert set(cache.changed(jobs)) == {"default/a", "default/b"}
    cache.mapped(jobs)  # a round that did not get to plan: its changes stay for the next
    assert set(cache.changed(jobs)) == {"default/a", "default/b"}
    cache.planned([], [])
    cache.mapped(jobs)
    assert cache.changed(jobs) == {}


def test_the_policy_weighs_what_crosses_the_link_away_and_all_io_at_home() -> None:
    """Away, a job busy with its -X private files (all local) is light for the policy; its output and
    working directory's traffic, the remote rate, is what counts. At home all of its I/O counts."""
    rates = {"ioRateKbps": 5000.0, "remoteIoKbps": 12.5, "homeNode": "node1"}
    away = views.job_view(mosix_job("a", "1", phase="Running", node="node2", **rates))
    home = views.job_view(mosix_job("h", "1", phase="Running", node="node1", **rates))
    unmeasured = views.job_view(mosix_job("u", "1", phase="Running", node="node2", homeNode="node1",
                                          ioRateKbps=5000.0))
    assert (away.io_rate_kbps, home.io_rate_kbps, unmeasured.io_rate_kbps) == (12.5, 5000.0, 0.0)
