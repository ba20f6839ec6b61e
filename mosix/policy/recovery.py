"""Recovery: a job whose node died restarts from its newest reachable checkpoint elsewhere.

Without a checkpoint it fails, saying so; with checkpoints only on dead nodes it fails too,
since waiting for a dead node would leave it hanging with no owner. A gang or commands file
that lost a process fails as a whole, naming the process.
"""

from __future__ import annotations

from mosix.policy import decisions, ledger, placement, snapshot

_LIVE = (snapshot.JobState.RUNNING, snapshot.JobState.MIGRATING, snapshot.JobState.FROZEN,
         snapshot.JobState.PENDING)


def lost(led: ledger.Ledger, job: snapshot.JobView) -> bool:
    """Was `job` (or one of its processes) on a node that is now dead or gone?"""
    if job.processes:
        return job.state in _LIVE and lost_process(led, job) is not None
    return job.state in _LIVE and job.node is not None and not led.alive(job.node)


def lost_process(led: ledger.Ledger, job: snapshot.JobView) -> snapshot.ProcessView | None:
    """The first unfinished process of a gang or commands file whose node is dead or gone."""
    return next((p for p in job.live_processes() if p.node is not None and not led.alive(p.node)), None)


def newest(led: ledger.Ledger, job: snapshot.JobView) -> snapshot.CheckpointView | None:
    """The checkpoint to restart from; criteria in order: reachable (shared storage or a
    live node), newest time, then the greatest name (deterministic tie-break)."""
    usable = [c for c in job.checkpoints if c.node is None or led.alive(c.node)]
    return max(usable, key=lambda c: (c.time, c.name), default=None)


def recover_into(led: ledger.Ledger) -> tuple[list[decisions.Recovery], list[decisions.Failure],
                                              list[decisions.Wait], list[decisions.Admission]]:
    """Recoveries, failures, waits (no node to restart on) and restarts for jobs lost with
    their node. A job that was only about to start (Pending) and has no checkpoint lost
    nothing: it simply starts elsewhere."""
    recoveries: list[decisions.Recovery] = []
    failures: list[decisions.Failure] = []
    waits: list[decisions.Wait] = []
    restarts: list[decisions.Admission] = []
    up = led.up
    if led.index is None:
        gone = [j for j in led.in_state(*_LIVE)  # `lost`, with its one-process case inlined (most jobs)
                if (lost_process(led, j) is not None if j.processes else j.node is not None and j.node not in up)]
    else:  # the same jobs: those on nodes not up, and processes lost
        gone = [j for node, jobs in led.index.live_on().items() if node not in up for j in jobs.values()]
        gone += [j for j in led.apart() if j.processes and j.state in _LIVE and lost_process(led, j) is not None]
    for job in sorted(gone, key=lambda j: j.name):
        if job.name in led.decided:
            continue
        led.decided.add(job.name)
        proc = lost_process(led, job) if job.processes else None
        if proc is not None:  # a process set is not restarted from checkpoints: it fails as a whole
            failures.append(decisions.Failure(job.name, decisions.FailReason.NO_CHECKPOINT,
                                              f"process {proc.index} was on node {proc.node}, which died"))
            continue
        assert job.node is not None
        checkpoint = newest(led, job)
        if checkpoint is None and job.state is snapshot.JobState.PENDING:
            target = placement.choose(led, job, slot=False)
            if target is None:
                waits.append(decisions.Wait(job.name, decisions.WaitReason.NO_NODE))
            else:
                led.add(job, target.name)
                restarts.append(decisions.Admission(job.name, (target.name,), decisions.AdmitReason.RESTART))
            continue
        if checkpoint is None:
            reason = (decisions.FailReason.CHECKPOINT_LOST if job.checkpoints
                      else decisions.FailReason.NO_CHECKPOINT)
            text = "its checkpoints were on dead nodes" if job.checkpoints else "it had no checkpoint"
            failures.append(decisions.Failure(job.name, reason, f"node {job.node} died and {text}"))
            continue
        target = placement.best(led, job, slot=True) or placement.best(led, job, slot=False)
        if target is None:
            waits.append(decisions.Wait(job.name, decisions.WaitReason.NO_NODE))
            continue
        led.add(job, target.name)
        recoveries.append(decisions.Recovery(job.name, checkpoint.name, job.node, target.name))
    return recoveries, failures, waits, restarts


def recover(snap: snapshot.Snapshot) -> list[decisions.Recovery]:
    """The recoveries of one round on `snap`."""
    return recover_into(ledger.Ledger(snap))[0]
