"""Recovery: a job whose node died restarts from its newest reachable checkpoint elsewhere.

Without a checkpoint it fails, saying so; with checkpoints only on dead nodes it fails too,
since waiting for a dead node would leave it hanging with no owner. A gang or commands file
recovers process by process: each process lost with its node restarts from its own newest
checkpoint elsewhere (one that had not started yet simply starts elsewhere); a started process
without one fails the whole job, naming the process.
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
        if job.processes:
            done, failure, wait = _processes(led, job)
            recoveries += done
            failures += [failure] if failure is not None else []
            waits += [wait] if wait is not None else []
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


def _processes(led: ledger.Ledger, job: snapshot.JobView) -> tuple[list[decisions.Recovery],
                                                                   decisions.Failure | None, decisions.Wait | None]:
    """The recoveries of a gang's or commands file's processes lost with their nodes, each from its own
    newest reachable checkpoint onto the best node; or the job's failure, naming the first started process
    that has none (then nothing of it restarts); or a wait when no node takes the rest this round."""
    lost = [p for p in job.live_processes() if p.node is not None and not led.alive(p.node)]
    plans: list[tuple[snapshot.ProcessView, snapshot.JobView, snapshot.CheckpointView | None]] = []
    for proc in lost:
        unit = ledger.unit(job, proc)
        checkpoint = newest(led, unit)
        if checkpoint is None and proc.state is not snapshot.JobState.PENDING:
            reason = (decisions.FailReason.CHECKPOINT_LOST if proc.checkpoints
                      else decisions.FailReason.NO_CHECKPOINT)
            text = "its checkpoints were on dead nodes" if proc.checkpoints else "it had no checkpoint"
            return [], decisions.Failure(job.name, reason,
                                         f"process {proc.index} was on node {proc.node}, which died, and {text}"), None
        plans.append((proc, unit, checkpoint))
    done: list[decisions.Recovery] = []
    for proc, unit, checkpoint in plans:
        target = placement.best(led, unit, slot=True) or placement.best(led, unit, slot=False)
        if target is None:
            return done, None, decisions.Wait(job.name, decisions.WaitReason.NO_NODE)
        led.add(unit, target.name)
        assert proc.node is not None
        done.append(decisions.Recovery(unit.name, checkpoint.name if checkpoint else None, proc.node, target.name))
    return done, None, None


def recover(snap: snapshot.Snapshot) -> list[decisions.Recovery]:
    """The recoveries of one round on `snap`."""
    return recover_into(ledger.Ledger(snap))[0]
