"""Freezing: for load (reason Auto), on expulsion (reason Expelled), and continuing after.

A frozen job's memory image is on disk and its process gone, so it costs its node no CPU.
A gang's or commands file's processes freeze and continue one by one, each on its node.
Only as many jobs are frozen as bring the node back under its class limit, and an
auto-frozen job continues only where it keeps the node under the limit, so a job is never
frozen and continued back and forth. Manually frozen jobs are the user's to continue.
"""

from __future__ import annotations

import math

from mosix.policy import decisions, ledger, placement, snapshot

_ACTIVE = (snapshot.JobState.RUNNING,)


def limit(cluster: snapshot.ClusterView, grid_class: int) -> float:
    """The load per CPU above which jobs of `grid_class` are frozen (inf: never)."""
    return cluster.freeze_limits.get(grid_class, math.inf)


def freeze_order(job: snapshot.JobView, node: str, default_priority: int) -> tuple[bool, int, float, str]:
    """Which job freezes first; criteria in order:

    1. guests (home elsewhere) before the node's own jobs;
    2. lower queue priority (higher number) first;
    3. most recently started first (it has the least invested);
    4. name (deterministic tie-break).
    """
    started = -math.inf if job.started_at is None else job.started_at
    own = job.home == node or job.home is None
    return (own, -job.effective_priority(default_priority), -started, job.name)


def _on(led: ledger.Ledger, state: snapshot.JobState) -> dict[str, list[snapshot.JobView]]:
    """Jobs in `state` by node; a gang's or commands file's processes each on their own node, in
    place of their job."""
    jobs: dict[str, list[snapshot.JobView]] = {}
    for job in [*led.in_state(state), *led.units[state]]:
        if job.node is not None and job.name not in led.decided and not job.processes:
            jobs.setdefault(job.node, []).append(job)
    return jobs


def freeze_into(led: ledger.Ledger) -> list[decisions.Freeze]:
    """Freeze the excess on nodes whose load per CPU passes a class's limit.

    Classes with lower limits are relieved first; within a class, jobs go in `freeze_order`
    and freezing stops as soon as the node is back at the limit; then `_spare` lifts any
    freeze a later, bigger one made unnecessary.
    """
    cluster = led.cluster
    freezes: list[decisions.Freeze] = []
    lowest = min(cluster.freeze_limits.values(), default=math.inf)
    over = {n.name for n in led.snapshot.nodes if n.alive and led.load[n.name] > lowest * max(n.cpus, 1)}
    if not over:
        return freezes
    running = _on(led, snapshot.JobState.RUNNING)
    for name in sorted(over & running.keys()):
        node = led.nodes[name]
        cpus = max(node.cpus, 1)
        candidates = [j for j in running[name] if j.migratable and j.parallel == 1 and j.commands_max is None]
        here: list[snapshot.JobView] = []
        for grid_class in sorted({j.grid_class for j in candidates}, key=lambda c: (limit(cluster, c), c)):
            ceiling = limit(cluster, grid_class) * cpus
            group = sorted((j for j in candidates if j.grid_class == grid_class),
                           key=lambda j: freeze_order(j, name, cluster.default_priority))
            for job in group:
                if led.load[name] <= ceiling + ledger.EPSILON:
                    break
                led.remove(job, name)
                led.decided.add(job.name)
                here.append(job)
        if here:
            kept = _spare(led, node, running[name], here)
            freezes += [decisions.Freeze(j.name, name, snapshot.FreezeReason.AUTO) for j in kept]
    return freezes


def _spare(led: ledger.Ledger, node: snapshot.NodeView, jobs: list[snapshot.JobView],
           frozen: list[snapshot.JobView]) -> list[snapshot.JobView]:
    """`frozen` without the freezes that turned out unneeded (jobs differ in CPU demand, so a
    later, bigger freeze can make an earlier one unnecessary): last frozen first, a job is
    spared when running it keeps its class within its limit and no satisfied class over."""
    cpus = max(node.cpus, 1)
    names = {j.name for j in frozen}
    running = {j.grid_class for j in jobs if j.name not in names}
    kept: list[snapshot.JobView] = []
    for job in reversed(frozen):
        load = led.load[node.name]
        ceilings = [limit(led.cluster, c) * cpus for c in running | {job.grid_class}]
        within = all(load + job.cpu_demand <= c + ledger.EPSILON for c in ceilings if load <= c + ledger.EPSILON)
        if within and load + job.cpu_demand <= limit(led.cluster, job.grid_class) * cpus + ledger.EPSILON:
            led.add(job, node.name)
            led.decided.discard(job.name)
            running.add(job.grid_class)
        else:
            kept.append(job)
    return list(reversed(kept))


def continue_into(led: ledger.Ledger) -> list[decisions.Continue]:
    """Continue frozen jobs whose reason for freezing has passed.

    Auto: on its node, oldest first, while the node stays within the class's limit (a guest
    on a node that now blocks or expels goes as if expelled). Expelled: at home if home
    takes it, else on its node once that takes it again, else on the best node with a free
    CPU.
    """
    cluster = led.cluster
    out: list[decisions.Continue] = []
    frozen = _on(led, snapshot.JobState.FROZEN)
    for name in sorted(frozen):
        node = led.nodes.get(name)
        if node is None or not node.alive:
            continue
        jobs = sorted(frozen[name], key=lambda j: freeze_order(j, name, cluster.default_priority),
                      reverse=True)
        for job in jobs:
            target: snapshot.NodeView | None = None
            guest = job.home is not None and job.home != name
            if job.frozen_reason is snapshot.FreezeReason.AUTO and guest and (node.expel or node.block):
                target = _readmit(led, job, node)  # not back onto a node that refuses guests
            elif job.frozen_reason is snapshot.FreezeReason.AUTO:
                ceiling = limit(cluster, job.grid_class) * max(node.cpus, 1)
                if led.load[name] + job.cpu_demand <= ceiling + ledger.EPSILON:
                    target = node
            elif job.frozen_reason is snapshot.FreezeReason.EXPELLED:
                target = _readmit(led, job, node)
            if target is None or (snapshot.split_unit(job.name)[1] is not None and target.name != name):
                continue  # a process of a gang or commands file continues where it is, or not yet
            led.add(job, target.name)
            led.decided.add(job.name)
            reason = job.frozen_reason or snapshot.FreezeReason.AUTO
            out.append(decisions.Continue(job.name, target.name, reason))
    return out


def _readmit(led: ledger.Ledger, job: snapshot.JobView, node: snapshot.NodeView) -> snapshot.NodeView | None:
    home = led.nodes.get(job.home) if job.home is not None else None
    if home is not None and placement.eligible(led, home, job, slot=False):
        return home
    if placement.eligible(led, node, job, slot=True):
        return node
    return placement.best(led, job, slot=True)


def expel_into(led: ledger.Ledger) -> tuple[list[decisions.Migration], list[decisions.Freeze]]:
    """Send guests off expelling nodes: home if it takes them, else the best node, else
    freeze them there (reason Expelled). Locked jobs are frozen; hysteresis does not apply."""
    moves: list[decisions.Migration] = []
    freezes: list[decisions.Freeze] = []
    for node in sorted((n for n in led.snapshot.nodes if n.alive and n.expel), key=lambda n: n.name):
        here = led.in_state(*_ACTIVE) if led.index is None else led.index.on(snapshot.JobState.RUNNING, node.name)
        guests = sorted((j for j in here
                         if j.node == node.name and j.home is not None
                         and j.home != node.name and j.name not in led.decided), key=lambda j: j.name)
        for job in guests:
            if not job.migratable:
                continue
            target = None if job.locked or job.parallel > 1 or job.commands_max is not None else _away(led, job, node)
            led.decided.add(job.name)
            if target is None:
                led.remove(job, node.name)
                freezes.append(decisions.Freeze(job.name, node.name, snapshot.FreezeReason.EXPELLED))
            else:
                led.move(job, node.name, target.name)
                moves.append(decisions.Migration(job.name, node.name, target.name,
                                                 decisions.MigrationReason.EXPELLED))
    return moves, freezes


def _away(led: ledger.Ledger, job: snapshot.JobView, node: snapshot.NodeView) -> snapshot.NodeView | None:
    home = led.nodes.get(job.home) if job.home is not None else None
    if home is not None and placement.eligible(led, home, job, slot=False):
        return home
    return placement.best(led, job, slot=False, exclude=node.name)


def freeze(snap: snapshot.Snapshot) -> list[decisions.Freeze]:
    """The load freezes of one round on `snap`."""
    return freeze_into(ledger.Ledger(snap))
