"""Gangs and commands files as per-process units: their started processes load their own nodes, and a
process lost with its node fails the job, naming it."""

from __future__ import annotations

from mosix.policy import decide, decisions, ledger, snapshot

P = snapshot.ProcessView
S = snapshot.JobState


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"memory_free_mb": 8000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def snap(nodes: list[snapshot.NodeView], *jobs: snapshot.JobView) -> snapshot.Snapshot:
    return snapshot.Snapshot(tuple(nodes), jobs, snapshot.ClusterView(), 100.0)


def test_pending_processes_load_their_own_nodes() -> None:
    gang = snapshot.JobView("g", state=S.PENDING, queued=True, parallel=3, node="n1",
                            processes=(P(0, "n1"), P(1, "n2"), P(2, "n3", S.RUNNING)))
    led = ledger.Ledger(snap([node(1), node(2), node(3)], gang))
    assert led.load == {"n1": 1.0, "n2": 1.0, "n3": 0.0}  # a running one is in its node's reported load


def test_a_pending_line_keeps_the_next_line_off_its_node() -> None:
    lines = snapshot.JobView("s", state=S.RUNNING, queued=False, commands_max=2, commands_total=3,
                             commands_started=2, commands_running=1, node="n1",
                             processes=(P(0, "n1", S.SUCCEEDED), P(1, "n1", S.PENDING)))
    out = decide.decide(snap([node(1), node(2)], lines))
    assert out.admissions == (decisions.Admission("s", ("n2",), decisions.AdmitReason.LINES, first_line=2),)


def test_a_gang_that_lost_a_process_with_its_node_fails_naming_it() -> None:
    gang = snapshot.JobView("g", state=S.RUNNING, queued=True, parallel=2, node="n1", home="n1",
                            processes=(P(0, "n1", S.RUNNING), P(1, "n2", S.RUNNING)))
    out = decide.decide(snap([node(1), node(2, alive=False), node(3)], gang))
    assert [(f.job, f.reason) for f in out.failures] == [("g", decisions.FailReason.NO_CHECKPOINT)]
    assert out.failures[0].message == "process 1 was on node n2, which died"
    assert out.recoveries == () and out.admissions == ()


def test_a_finished_process_on_a_dead_node_loses_nothing() -> None:
    lines = snapshot.JobView("s", state=S.RUNNING, queued=False, commands_max=1, commands_total=2,
                             commands_started=2, commands_running=1, node="n1", home="n1",
                             processes=(P(0, "n2", S.SUCCEEDED), P(1, "n1", S.RUNNING)))
    out = decide.decide(snap([node(1), node(2, alive=False)], lines))
    assert out.failures == () and out.recoveries == ()
