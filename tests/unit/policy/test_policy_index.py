"""The job index: rounds decided on its incrementally kept snapshot decide exactly what the same
round decides on a snapshot built afresh, over random sequences of what happens to a cluster
(submit, finish, cngpri, advance/retard, run, starts, node load and life, I/O, knobs) with each
round's decisions carried out; and its orders and groupings are the plain ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosix.policy import decide, decisions, index, ledger, placement, queue, snapshot

S = snapshot.JobState
NODES = 5


class World:
    """A small cluster's jobs, kept both in a plain dict (snapshot order: first put, replaced in
    place) and in a `JobIndex` told of every change."""

    def __init__(self, nodes: list[snapshot.NodeView]) -> None:
        self.nodes = nodes
        self.jobs: dict[str, snapshot.JobView] = {}
        self.index = index.JobIndex()
        self.cluster = snapshot.ClusterView()
        self.now = 1000.0
        self.serial = 0

    def put(self, job: snapshot.JobView) -> None:
        self.jobs[job.name] = job
        self.index.put(job)

    def node(self, at: int, **changes: Any) -> None:
        self.nodes[at] = dataclasses.replace(self.nodes[at], **changes)

    def drop(self, name: str) -> None:
        del self.jobs[name]
        self.index.remove(name)

    def both(self) -> tuple[decisions.Decisions, decisions.Decisions]:
        plain = snapshot.Snapshot(tuple(self.nodes), tuple(self.jobs.values()), self.cluster, self.now)
        fast = self.index.snapshot_at(tuple(self.nodes), self.cluster, self.now)
        assert fast.jobs == plain.jobs and ledger.Ledger(fast).index is self.index  # the index is read
        return decide.decide(plain), decide.decide(fast)

    def carry_out(self, out: decisions.Decisions) -> None:
        """What the agents would do with the decisions, roughly: enough to move jobs between states."""
        for a in out.admissions:
            job = self.jobs[a.job]
            if job.parallel > 1 or job.commands_max is not None:
                first = len(job.processes)
                procs = job.processes + tuple(snapshot.ProcessView(first + k, node, S.PENDING)
                                              for k, node in enumerate(a.nodes))
                self.put(dataclasses.replace(job, state=S.PENDING if job.state is S.QUEUED else job.state,
                                             node=a.nodes[0], processes=procs,
                                             commands_started=job.commands_started + len(a.nodes),
                                             commands_running=job.commands_running + len(a.nodes)))
            else:
                self.put(dataclasses.replace(job, state=S.PENDING, node=a.nodes[0]))
        for m in out.migrations:
            self._change(m.job, node=m.target, last_migration=self.now)
        for f in out.freezes:
            self._unit(f.job, S.FROZEN, f.node, f.reason)
        for c in out.continues:
            self._unit(c.job, S.RUNNING, c.node, None)
        for r in out.recoveries:
            self._change(r.job, state=S.PENDING, node=r.target)
        for lost in out.failures:
            self.drop(lost.job)

    def _change(self, name: str, **changes: Any) -> None:
        """Change a job, or one process of a gang or commands file when `name` names one (`snapshot.unit_name`)."""
        key, at = snapshot.split_unit(name)
        job = self.jobs[key]
        if at is None:
            self.put(dataclasses.replace(job, **changes))
            return
        procs = tuple(dataclasses.replace(p, **changes) if p.index == at else p for p in job.processes)
        self.put(dataclasses.replace(job, processes=procs))

    def _unit(self, name: str, state: S, node: str, reason: snapshot.FreezeReason | None) -> None:
        key, at = snapshot.split_unit(name)
        job = self.jobs[key]
        if at is None:
            self.put(dataclasses.replace(job, state=state, node=node, frozen_reason=reason))
            return
        procs = tuple(dataclasses.replace(p, state=state, frozen_reason=reason) if p.index == at else p
                      for p in job.processes)
        self.put(dataclasses.replace(job, processes=procs))


def new_job(world: World, data: st.DataObject) -> snapshot.JobView:
    world.serial += 1
    kind = data.draw(st.sampled_from(["one", "one", "one", "gang", "lines", "direct"]))
    queued = kind != "direct" and (kind != "lines" or data.draw(st.booleans()))
    return snapshot.JobView(
        name=f"j{world.serial:03d}",
        state=S.QUEUED if queued else S.PENDING,
        queued=queued,
        priority=data.draw(st.sampled_from([None, None, 20, 60])),
        position=world.serial * 10,
        submitted=world.serial,
        home=f"n{data.draw(st.integers(1, NODES))}",
        placement=data.draw(st.sampled_from(list(snapshot.PlacementKind))),
        node_ref=str(data.draw(st.integers(1, NODES + 1))),
        ranges=((1, data.draw(st.integers(1, NODES))),),
        memory_mb=data.draw(st.sampled_from([0, 0, 500, 3000])),
        grid_class=data.draw(st.sampled_from([0, 0, 1])),
        parallel=2 if kind == "gang" else 1,
        commands_max=2 if kind == "lines" else None,
        commands_total=3 if kind == "lines" else 0,
        started_at=world.now,
        locked=data.draw(st.integers(0, 9)) == 0,
        expected_remaining_s=data.draw(st.sampled_from([None, None, None, 50.0])),
    )


def step(world: World, op: str, data: st.DataObject) -> None:
    """One thing happening to the cluster."""
    names = list(world.jobs)
    pick = data.draw(st.sampled_from(names)) if names else None
    job = world.jobs[pick] if pick is not None else None
    if op == "submit" or job is None:
        world.put(new_job(world, data))
    elif op == "finish":
        world.drop(job.name)
    elif op == "start":  # the agents start what was placed, some with a checkpoint to recover from
        for each in [j for j in world.jobs.values() if j.node is not None and (
                j.state is S.PENDING or any(p.state is S.PENDING for p in j.processes))]:
            procs = tuple(dataclasses.replace(p, state=S.RUNNING, started_at=world.now)
                          if p.state is S.PENDING else p for p in each.processes)
            saved = (snapshot.CheckpointView("c1", world.now, data.draw(st.sampled_from([None, each.node]))),)
            world.put(dataclasses.replace(each, state=S.RUNNING, started_at=world.now, processes=procs,
                                          checkpoints=saved if data.draw(st.booleans()) else ()))
    elif op == "done" and any(p.state is S.RUNNING for p in job.processes):  # one process ended
        ended = next(p.index for p in job.processes if p.state is S.RUNNING)
        procs = tuple(dataclasses.replace(p, state=S.SUCCEEDED) if p.index == ended else p for p in job.processes)
        world.put(dataclasses.replace(job, processes=procs, commands_running=job.commands_running - 1))
    elif op == "cngpri" and job.state is S.QUEUED:
        world.put(queue.cngpri(job, data.draw(st.sampled_from([10, 20, 50, 60]))))
    elif op in ("advance", "retard") and job.state is S.QUEUED:
        move = queue.advance if op == "advance" else queue.retard
        world.put(dataclasses.replace(job, position=move(list(world.jobs.values()), job.name,
                                                         world.cluster.default_priority)))
    elif op == "run" and job.state is S.QUEUED:
        world.put(queue.run(job))
    elif op == "io" and job.state is S.RUNNING:
        world.put(dataclasses.replace(job, io_rate_kbps=data.draw(st.sampled_from([0.0, 100.0, 5000.0])),
                                      stay_on_syscalls=data.draw(st.booleans())))
    elif op == "node":
        at = data.draw(st.integers(0, len(world.nodes) - 1))
        world.nodes[at] = dataclasses.replace(
            world.nodes[at], load=data.draw(st.sampled_from([0.0, 1.0, 3.0, 9.0])),
            alive=data.draw(st.integers(0, 4)) != 0, expel=data.draw(st.integers(0, 5)) == 0,
            memory_free_mb=data.draw(st.sampled_from([100, 2000, 8000])), block=data.draw(st.integers(0, 8)) == 0)
    elif op == "nodes":  # a node joins or leaves, or two nodes end up sharing a name or number
        change = data.draw(st.sampled_from(["join", "leave", "renumber", "twin"]))
        if change == "join":
            number = max(n.number for n in world.nodes) + 1
            world.nodes.append(snapshot.NodeView(name=f"n{number}", number=number, cpus=2, speed=2.0,
                                                 memory_free_mb=8000))
        elif change == "twin":  # a second node of the same name (a round keeps the last one's state)
            twin = data.draw(st.sampled_from(world.nodes))
            world.nodes.append(dataclasses.replace(twin, cpus=twin.cpus + 1, load=1.0))
        elif change == "leave" and len(world.nodes) > 1:
            world.nodes.pop(data.draw(st.integers(0, len(world.nodes) - 1)))
        else:
            at = data.draw(st.integers(0, len(world.nodes) - 1))
            world.nodes[at] = dataclasses.replace(world.nodes[at], number=world.nodes[0].number)
    elif op == "knobs":
        world.cluster = dataclasses.replace(
            world.cluster, default_priority=data.draw(st.sampled_from([40, 50, 55])),
            max_running=data.draw(st.sampled_from([None, 2, 6])),
            hysteresis_s=data.draw(st.sampled_from([0.0, 30.0])),
            migration_cost_s=data.draw(st.sampled_from([0.0, 1.0])),
            freeze_limits=data.draw(st.sampled_from([{0: 4.0}, {0: 1.0, 1: 2.0}, {0: 0.5}])))
    world.now += data.draw(st.sampled_from([0.0, 2.0, 40.0]))


OPS = ["submit", "submit", "submit", "finish", "start", "start", "done", "cngpri", "advance", "retard", "run", "io",
       "node", "node", "nodes", "knobs", "round", "round", "round"]


def play(world: World, ops: list[str], step_by: Callable[[World, str, st.DataObject], None],
         data: st.DataObject) -> None:
    """Plays ops on world; at each "round", the incremental round must decide what a round from scratch
    decides, and that decision is carried out."""
    for op in ops:
        if op != "round":
            step_by(world, op, data)
            continue
        plain, fast = world.both()
        assert fast == plain
        world.carry_out(plain)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_incremental_rounds_decide_what_rounds_from_scratch_decide(data: st.DataObject) -> None:
    nodes = [snapshot.NodeView(name=f"n{i}", number=i, address=f"10.0.0.{i}",
                               cpus=data.draw(st.sampled_from([1, 2, 4])),
                               speed=data.draw(st.sampled_from([1.0, 2.0, 3.0])),
                               memory_free_mb=8000, memory_total_mb=8000,
                               local=data.draw(st.integers(0, 6)) != 0)
             for i in range(1, NODES + 1)]
    world = World(nodes)
    play(world, data.draw(st.lists(st.sampled_from(OPS), min_size=20, max_size=60)), step, data)
    plain, fast = world.both()
    assert fast == plain


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_the_index_keeps_the_plain_orders_and_groups(data: st.DataObject) -> None:
    world = World([snapshot.NodeView(name=f"n{i}", number=i, address=f"10.0.0.{i}", cpus=2, memory_free_mb=8000)
                   for i in range(1, 6)])
    for op in data.draw(st.lists(st.sampled_from(OPS), max_size=40)):
        if op == "round":
            world.carry_out(world.both()[0])
        else:
            step(world, op, data)
    jobs, idx = list(world.jobs.values()), world.index
    idx.snapshot_at(tuple(world.nodes), world.cluster, world.now)
    default = world.cluster.default_priority
    assert [e[4] for e in idx.queue()] == [j.name for j in queue.order(jobs, default) if j.queued]
    for state in S:
        assert idx.in_state(state) == [j for j in jobs if j.state is state]
        assert idx.count(state) == len(idx.in_state(state))
    for state in (S.RUNNING, S.MIGRATING):
        for node in {j.node for j in jobs if j.node is not None} | {"elsewhere"}:
            assert idx.on(state, node) == [j for j in jobs if j.state is state and j.node == node]
    waiting: dict[tuple[int | None, int], int] = {}
    for j in jobs:
        if j.state is S.QUEUED:
            waiting[j.priority, j.grid_class] = waiting.get((j.priority, j.grid_class), 0) + 1
    assert idx.waiting_by() == waiting
    assert idx.slots() == sum(1 for j in jobs if j.queued and j.state in (S.RUNNING, S.MIGRATING, S.PENDING)
                              and j.node is not None)
    assert len(idx) == len(jobs)
    nodes = tuple(world.nodes)
    idx.snapshot_at(nodes, world.cluster, world.now)
    tables, fresh = idx.tables(), index.Tables()
    fresh.update(nodes)
    for table in ("nodes", "by_number", "by_address", "load", "free_mb", "guests", "up", "grid", "version", "ranked",
                  "slowest", "distinct"):
        assert getattr(tables, table) == getattr(fresh, table), table
    plain = ledger.Ledger(snapshot.Snapshot(nodes, (), world.cluster, world.now))
    for slot in (False, True):
        assert tables.ranked[slot] == sorted((plain.rank(n, 1.0, slot), 0) for n in nodes)
    assert tables.slowest == sorted((-ledger.unit_time(plain.nodes[n.name], plain.load[n.name]), n.name, 0)
                                    for n in nodes)


def test_a_snapshot_is_used_only_while_the_index_is_unchanged() -> None:
    idx = index.JobIndex()
    idx.put(snapshot.JobView(name="a"))
    snap = idx.snapshot_at((), snapshot.ClusterView(), 0.0)
    assert idx.current(snap)
    idx.put(snapshot.JobView(name="b"))
    assert not idx.current(snap)  # a round on it would read the index's newer state: it reads the snapshot
    idx.remove("b")
    assert not idx.current(snap)
    assert idx.current(idx.snapshot_at((), snapshot.ClusterView(), 0.0))


def settled_world(data: st.DataObject) -> World:
    """A cluster already running jobs of varied ages, moved or not lately, for the balancer's kept sources."""
    world = World([snapshot.NodeView(name=f"n{i}", number=i, address=f"10.0.0.{i}",
                                     cpus=data.draw(st.sampled_from([1, 2, 4])),
                                     speed=data.draw(st.sampled_from([1.0, 2.0, 3.0])),
                                     memory_free_mb=8000, memory_total_mb=8000)
                   for i in range(1, 7)])
    world.cluster = snapshot.ClusterView(migration_cost_s=data.draw(st.sampled_from([1.0, 30.0, 300.0])))
    for at, node in enumerate(world.nodes):
        count = data.draw(st.integers(0, 5))
        for _ in range(count):
            world.serial += 1
            world.put(snapshot.JobView(
                name=f"r{world.serial:03d}", state=S.RUNNING, queued=False, node=node.name,
                home=node.name, started_at=world.now - data.draw(st.sampled_from([0.0, 5.0, 60.0, 400.0])),
                last_migration=data.draw(st.sampled_from([None, None, world.now - 10.0, world.now - 29.0])),
                memory_mb=data.draw(st.sampled_from([0, 0, 500]))))
        world.nodes[at] = dataclasses.replace(node, load=float(count))
    return world


def settled_step(world: World, op: str, data: st.DataObject) -> None:
    """What changes a kept source (its jobs, its node, the clock, the knobs) or leaves it be."""
    running = [j for j in world.jobs.values() if j.state is S.RUNNING]
    job = data.draw(st.sampled_from(running)) if running else None
    if op == "clock":
        world.now += data.draw(st.sampled_from([1.0, 2.0, 7.0, 40.0, 500.0]))
    elif op == "start":  # what was placed runs, and shows in its node's load
        for each in [j for j in world.jobs.values() if j.state is S.PENDING]:
            world.put(dataclasses.replace(each, state=S.RUNNING, started_at=world.now))
        counts = {n.name: 0 for n in world.nodes}
        for each in world.jobs.values():
            if each.node in counts and each.state in (S.RUNNING, S.MIGRATING):
                counts[each.node] += 1
        world.nodes = [dataclasses.replace(n, load=float(counts[n.name])) if n.load != counts[n.name] else n
                       for n in world.nodes]
    elif op == "job" and job is not None:
        changes: list[dict[str, Any]] = [
            {"expected_remaining_s": 50.0}, {"expected_remaining_s": None}, {"io_rate_kbps": 5000.0},
            {"locked": True}, {"last_migration": world.now}, {"memory_mb": 2000}, {"state": S.MIGRATING},
            {"started_at": world.now + 5.0}]
        world.put(dataclasses.replace(job, **data.draw(st.sampled_from(changes))))
    elif op == "finish" and job is not None:
        world.drop(job.name)
    elif op == "speed":
        at = data.draw(st.integers(0, len(world.nodes) - 1))
        world.nodes[at] = dataclasses.replace(world.nodes[at], cpus=data.draw(st.sampled_from([1, 2, 4])),
                                              speed=data.draw(st.sampled_from([1.0, 2.0, 3.0])))
    else:
        step(world, op, data)


SETTLED_OPS = ["clock", "clock", "clock", "start", "job", "finish", "submit", "node", "speed", "knobs",
               "round", "round", "round", "round"]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_sources_kept_between_rounds_decide_what_rounds_from_scratch_decide(data: st.DataObject) -> None:
    """The balancer's kept summaries of source nodes (`balancing.Settled`) move on with the clock, and are
    made afresh when a node, its jobs or the knobs change: rounds using them decide as rounds without."""
    world = settled_world(data)
    play(world, data.draw(st.lists(st.sampled_from(SETTLED_OPS), min_size=10, max_size=40)), settled_step, data)


def test_a_kept_source_is_weighed_again_as_its_jobs_age() -> None:
    """A slow node's young job is not worth moving to a fast node; 400 s later it is, though neither node
    changed: the kept summary of the slow node moved on with the clock, and the round moves the job."""
    world = World([snapshot.NodeView(name="slow", number=1, cpus=1, speed=1.0, load=2.0, memory_free_mb=8000),
                   snapshot.NodeView(name="fast", number=2, cpus=1, speed=3.0, load=1.0, memory_free_mb=8000)])
    world.cluster = snapshot.ClusterView(migration_cost_s=300.0)
    for name, node, age in (("a", "slow", 10.0), ("b", "slow", 10.0), ("c", "fast", 10.0)):
        world.put(snapshot.JobView(name=name, state=S.RUNNING, queued=False, node=node, home=node,
                                   started_at=world.now - age))
    plain, fast = world.both()
    assert plain.migrations == fast.migrations == ()
    assert "slow" in world.index.settled(world.cluster)  # kept for the next round
    world.now += 400.0
    plain, fast = world.both()
    assert fast == plain
    assert [(m.job, m.target) for m in fast.migrations] == [("a", "fast")]


def unplaced_world(data: st.DataObject) -> World:
    """A nearly full small cluster, some nodes of another cluster (guests), for jobs waiting on named nodes."""
    world = World([snapshot.NodeView(name=f"n{i}", number=i, address=f"10.0.0.{i}",
                                     cpus=data.draw(st.sampled_from([1, 2])),
                                     load=data.draw(st.sampled_from([1.0, 2.0])),
                                     memory_free_mb=data.draw(st.sampled_from([600, 4000])), memory_total_mb=8000,
                                     local=i <= 3, guests_max=1)
                   for i in range(1, 5)])
    world.cluster = snapshot.ClusterView(max_running=data.draw(st.sampled_from([None, None, 3])))
    return world


def unplaced_step(world: World, op: str, data: st.DataObject) -> None:
    """What may make a job waiting on named nodes placeable again (a slot, memory, guests or a policy freed on
    them, its own change, the nodes renumbered) or leave it waiting."""
    waiting = [j for j in world.jobs.values() if j.state is S.QUEUED]
    running = [j for j in world.jobs.values() if j.state is not S.QUEUED]
    at = data.draw(st.integers(0, len(world.nodes) - 1))
    node = world.nodes[at]
    if op == "submit":
        world.serial += 1
        kind = data.draw(st.sampled_from([snapshot.PlacementKind.NODE] * 3 + [snapshot.PlacementKind.RANGE,
                                                                           snapshot.PlacementKind.BEST]))
        first = data.draw(st.integers(1, 4))
        world.put(snapshot.JobView(
            name=f"j{world.serial:03d}", position=world.serial * 10, submitted=world.serial,
            priority=data.draw(st.sampled_from([None, 20])), placement=kind,
            node_ref=data.draw(st.sampled_from([str(first), f"10.0.0.{first}", f"n{first}", "n9"])),
            ranges=((first, min(4, first + data.draw(st.integers(0, 2)))),),
            home=data.draw(st.sampled_from(["n1", "n4", None])), grid_class=data.draw(st.sampled_from([0, 1])),
            memory_mb=data.draw(st.sampled_from([0, 0, 500, 3000])),
            parallel=data.draw(st.sampled_from([1, 1, 1, 2]))))
    elif op == "finish" and running:  # a job ends: its node's load drops (as the agent reports it)
        gone = data.draw(st.sampled_from(running))
        world.drop(gone.name)
        world.nodes = [dataclasses.replace(n, load=max(0.0, n.load - 1.0)) if n.name == gone.node else n
                       for n in world.nodes]
    elif op == "start":
        for each in [j for j in world.jobs.values() if j.state is S.PENDING]:
            world.put(dataclasses.replace(each, state=S.RUNNING, started_at=world.now))
    elif op == "load":
        world.nodes[at] = dataclasses.replace(node, load=max(0.0, node.load + data.draw(st.sampled_from(
            [-1.0, 1.0, 0.5, 1e-10]))))
    elif op == "memory":
        world.nodes[at] = dataclasses.replace(node, memory_free_mb=node.memory_free_mb + data.draw(
            st.sampled_from([-500, 500, 3000])))
    elif op == "guests":
        world.nodes[at] = dataclasses.replace(node, guests_running=data.draw(st.integers(0, 1)))
    elif op == "policy":
        flag = data.draw(st.sampled_from(["alive", "block", "accept", "dontgo", "outsider", "dont_take"]))
        world.node(at, **{flag: not getattr(node, flag)})
    elif op == "cpus":
        world.nodes[at] = dataclasses.replace(node, cpus=data.draw(st.sampled_from([1, 2, 3])))
    elif op == "renumber":  # two nodes swap numbers: the same names, other references
        other = data.draw(st.integers(0, len(world.nodes) - 1))
        a, b = world.nodes[at], world.nodes[other]
        world.nodes[at], world.nodes[other] = (dataclasses.replace(a, number=b.number),
                                               dataclasses.replace(b, number=a.number))
    elif op == "job" and waiting:
        job = data.draw(st.sampled_from(waiting))
        changes: list[dict[str, Any]] = [{"memory_mb": 0}, {"node_ref": "1"}, {"ranges": ((1, 4),)}, {"grid_class": 1}]
        world.put(dataclasses.replace(job, **data.draw(st.sampled_from(changes))))
    elif op == "look":  # a round whose decisions are not carried out (an agent down, a conflict)
        plain, fast = world.both()
        assert fast == plain
    world.now += 2.0


UNPLACED_OPS = ["submit", "submit", "submit", "finish", "start", "load", "load", "memory", "guests", "policy",
                "cpus", "renumber", "job", "look", "round", "round", "round", "round"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_jobs_kept_unplaced_decide_what_rounds_from_scratch_decide(data: st.DataObject) -> None:
    """Jobs waiting on named nodes that found none eligible are passed over while those nodes are no better
    (`queue.Unplaced`); rounds doing so decide, waits and their reasons included, as rounds checking every job."""
    world = unplaced_world(data)
    play(world, data.draw(st.lists(st.sampled_from(UNPLACED_OPS), min_size=10, max_size=50)), unplaced_step, data)


def test_a_job_kept_unplaced_is_not_checked_again_until_its_node_frees_a_slot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = World([snapshot.NodeView(name="n1", number=1, cpus=1, load=1.0, memory_free_mb=8000),
                   snapshot.NodeView(name="n2", number=2, cpus=1, load=0.0, memory_free_mb=8000)])
    world.put(snapshot.JobView(name="stuck", placement=snapshot.PlacementKind.NODE, node_ref="1"))
    world.put(snapshot.JobView(name="later", position=1, submitted=1, placement=snapshot.PlacementKind.NODE,
                               node_ref="9"))
    checked: list[str] = []
    choose = placement.choose

    def counting(led: ledger.Ledger, job: snapshot.JobView, *, slot: bool) -> snapshot.NodeView | None:
        if led.index is not None:
            checked.append(job.name)
        return choose(led, job, slot=slot)

    monkeypatch.setattr(placement, "choose", counting)
    waits = [decisions.Wait("stuck", decisions.WaitReason.NO_SLOTS),
             decisions.Wait("later", decisions.WaitReason.NO_NODE)]
    for _ in range(2):
        plain, fast = world.both()
        assert fast == plain and list(fast.waits) == waits
    assert checked == ["stuck", "later"]  # once, in the first round
    world.nodes[0] = dataclasses.replace(world.nodes[0], load=2.0)  # busier: still no slot
    assert world.both()[1].waits == tuple(waits) and checked == ["stuck", "later"]
    world.nodes[0] = dataclasses.replace(world.nodes[0], load=0.0)  # a job there ended
    plain, fast = world.both()
    assert fast == plain and [a.job for a in fast.admissions] == ["stuck"]
    assert checked == ["stuck", "later", "stuck"]


def _n(number: int, **fields: Any) -> snapshot.NodeView:
    defaults: dict[str, Any] = {"name": f"n{number}", "cpus": 1, "memory_free_mb": 8000}
    return snapshot.NodeView(number=number, **defaults | fields)


NODE1 = {"placement": snapshot.PlacementKind.NODE, "node_ref": "1"}
KEPT_CASES: dict[str, tuple[dict[str, Any], list[snapshot.NodeView], Callable[[World], None]]] = {
    # what the kept job saw, changed alone: (the job, its nodes, the change)
    "a slot freed": (NODE1, [_n(1, load=1.0)], lambda w: w.node(0, load=0.0)),
    "more CPUs": (NODE1, [_n(1, load=1.0)], lambda w: w.node(0, cpus=2)),
    "memory freed": (NODE1 | {"memory_mb": 5000}, [_n(1, memory_free_mb=1000)],
                     lambda w: w.node(0, memory_free_mb=8000)),
    "memory taken (no slot, then no memory)": (NODE1 | {"memory_mb": 500}, [_n(1, load=1.0, memory_free_mb=1000)],
                                               lambda w: w.node(0, memory_free_mb=100)),
    "a guest left": ({"placement": snapshot.PlacementKind.NODE, "node_ref": "2", "grid_class": 1, "home": "n1"},
                     [_n(1, load=1.0), _n(2, local=False, guests_running=1, guests_max=1)],
                     lambda w: w.node(1, guests_running=0)),
    "its home takes jobs": (NODE1 | {"home": "n3"}, [_n(1), _n(3, load=1.0, dont_take=True)],
                            lambda w: w.node(1, dont_take=False)),
    "unblocked": (NODE1, [_n(1, block=True)], lambda w: w.node(0, block=False)),
    "back alive": (NODE1, [_n(1, alive=False)], lambda w: w.node(0, alive=True)),
    "accepting": (NODE1, [_n(1, accept=False)], lambda w: w.node(0, accept=True)),
    "no longer dontgo": (NODE1, [_n(1, dontgo=True)], lambda w: w.node(0, dontgo=False)),
    "no longer outsider": (NODE1, [_n(1, outsider=True)], lambda w: w.node(0, outsider=False)),
    "renumbered": (NODE1, [_n(1, load=1.0), _n(2)],
                   lambda w: w.nodes.__setitem__(slice(0, 2), [_n(2, name="n1", load=1.0), _n(1, name="n2")])),
    "range widened": ({"placement": snapshot.PlacementKind.RANGE, "ranges": ((1, 1),)}, [_n(1, load=1.0), _n(2)],
                      lambda w: w.put(dataclasses.replace(w.jobs["kept"], ranges=((1, 2),)))),
    "the job changed": (NODE1, [_n(1, load=1.0), _n(2)],
                        lambda w: w.put(dataclasses.replace(w.jobs["kept"], node_ref="2"))),
}


@pytest.mark.parametrize("case", list(KEPT_CASES))
def test_a_job_kept_unplaced_sees_each_thing_it_depends_on(case: str) -> None:
    """Each thing a kept job's decision depends on, changed alone, changes the round's decision; the round
    with the kept job decides as the round from scratch."""
    fields, nodes, change = KEPT_CASES[case]
    world = World([*nodes, _n(9)])  # n9: a free CPU no job asks for, so the queue is walked
    world.put(snapshot.JobView(name="kept", **fields))
    first = world.both()
    assert first[0] == first[1] and not first[0].admissions
    assert "kept" in world.index.unplaced()
    assert world.both() == first  # kept, passed over
    change(world)
    plain, fast = world.both()
    assert fast == plain != first[0]
