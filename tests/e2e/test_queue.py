"""The queue as a user drives it: mosrun -q, mosq reorders as in the tutorial, the control plane keeps order.

No node is up in these scenarios, so queued jobs stay queued and only the queue's order is at play.
"""

from __future__ import annotations

from tests.e2e import harness


def _order(cluster: harness.Cluster, op: str = "list") -> list[str]:
    lines = cluster.run("mosq", op).stdout.splitlines()
    assert lines[0].split() == ["PID", "USER", "MEM(MB)", "GRID", "PRI", "FROM", "COMMAND"]
    return [line.split()[0] for line in lines[1:]]


def test_mosq_reorders_as_the_tutorial_shows(cluster: harness.Cluster) -> None:
    first = cluster.submit("-q", "-b", "testload")
    second = cluster.submit("-q", "-b", "-m1000", "testload")
    third = cluster.submit("-q", "testload")
    grid = cluster.submit("-q60", "-G", "-b", "-J1", "testload")
    assert _order(cluster) == [first, second, third, grid]

    cluster.run("mosq", "cngpri", "20", third)
    assert _order(cluster) == [third, first, second, grid]
    cluster.run("mosq", "advance", second)
    assert _order(cluster) == [third, second, first, grid]
    cluster.run("mosq", "retard", second)
    assert _order(cluster) == [third, first, second, grid]
    cluster.run("mosq", "delete", first)
    assert _order(cluster) == [third, second, grid]

    row = {line.split()[0]: line.split() for line in cluster.run("mosq", "listall").stdout.splitlines()[1:]}
    assert row[second][2:5] == ["1000", "NO", "50"]
    assert row[grid][3:5] == ["YES", "60"]
    assert row[third][4] == "20"


def test_bad_input_changes_nothing(cluster: harness.Cluster) -> None:
    bad = cluster.run("mosrun", "--detach", "-q99999", "testload", check=False)
    assert bad.returncode == 2 and "-q: priority must be 0-65535" in bad.stderr
    bad = cluster.run("mosq", "cngpri", "x", "1001", check=False)
    assert bad.returncode == 2 and "cngpri" in bad.stderr
    assert _order(cluster) == []
    assert cluster.api().jobs() == []


def test_control_plane_restart_mid_queue_loses_nothing_and_keeps_order(cluster: harness.Cluster) -> None:
    cluster.start_control_plane()
    jobs = [cluster.submit("-q", "testload") for _ in range(3)]
    late = cluster.submit("-q30", "testload")
    expected = [late, *jobs]

    def seen(names: list[str]) -> bool:  # the control plane wrote what a waiting job shows
        return all(st.where == "queue" and st.priority is not None for st in map(cluster.status, names))

    cluster.wait_for("the control plane to see the queue", lambda: seen(expected))
    assert _order(cluster) == expected
    cluster.stop_control_plane()
    more = cluster.submit("-q", "testload")  # submitted while the control plane is down
    cluster.run("mosq", "advance", jobs[2])
    cluster.start_control_plane()
    expected = [late, jobs[2], jobs[0], jobs[1], more]
    cluster.wait_for("the restarted control plane to see the new job", lambda: seen([more]))
    assert _order(cluster) == expected
    assert {cluster.status(j).phase.value for j in expected} == {"Queued"}
