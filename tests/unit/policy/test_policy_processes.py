"""Gangs and commands files as per-process units: their started processes load their own nodes, freeze
on their own, and a process lost with its node fails the job, naming it, unless it can restart from a
checkpoint of its own (tests/unit/policy/test_policy_gang_units.py: balancing and recovery per process)."""

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
    assert out.failures[0].message == "process 1 was on node n2, which died, and it had no checkpoint"
    assert out.recoveries == () and out.admissions == ()


def test_a_finished_process_on_a_dead_node_loses_nothing() -> None:
    lines = snapshot.JobView("s", state=S.RUNNING, queued=False, commands_max=1, commands_total=2,
                             commands_started=2, commands_running=1, node="n1", home="n1",
                             processes=(P(0, "n2", S.SUCCEEDED), P(1, "n1", S.RUNNING)))
    out = decide.decide(snap([node(1), node(2, alive=False)], lines))
    assert out.failures == () and out.recoveries == ()


def _lines_on_n1(*states: snapshot.JobState, frozen: snapshot.FreezeReason | None = None) -> snapshot.JobView:
    procs = tuple(P(i, "n1", state, frozen_reason=frozen if state is S.FROZEN else None, started_at=float(i))
                  for i, state in enumerate(states))
    return snapshot.JobView("s", state=S.RUNNING, queued=False, commands_max=9, commands_total=len(states),
                            commands_started=len(states), commands_running=len(states), node="n1", home="n1",
                            processes=procs)


def test_an_overloaded_node_freezes_single_processes_newest_first() -> None:
    lines = _lines_on_n1(*[S.RUNNING] * 6)
    out = decide.decide(snap([node(1, load=6.0)], lines))  # limit 4 per CPU: 2 too many, and nowhere to go
    assert out.freezes == (decisions.Freeze("s#5", "n1", snapshot.FreezeReason.AUTO),
                           decisions.Freeze("s#4", "n1", snapshot.FreezeReason.AUTO))
    assert out.migrations == ()


def test_auto_frozen_processes_continue_where_they_are_when_load_drops() -> None:
    lines = _lines_on_n1(S.RUNNING, S.FROZEN, S.FROZEN, frozen=snapshot.FreezeReason.AUTO)
    out = decide.decide(snap([node(1, load=3.0)], lines))  # room for one under the limit of 4
    assert out.continues == (decisions.Continue("s#1", "n1", snapshot.FreezeReason.AUTO),)
    manual = _lines_on_n1(S.RUNNING, S.FROZEN, frozen=None)  # frozen with its whole job: the user's to continue
    assert decide.decide(snap([node(1, load=1.0)], manual)).continues == ()


def test_unit_names_split_back_into_job_and_process() -> None:
    assert snapshot.split_unit(snapshot.unit_name("ns/1001", 7)) == ("ns/1001", 7)
    assert snapshot.split_unit("ns/1001") == ("ns/1001", None)
