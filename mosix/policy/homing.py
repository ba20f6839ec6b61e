"""Bringing I/O-heavy jobs home, as MOSIX does.

A job away from home pays for its I/O twice: every read and write (and its output) crosses the
link to the home node. When its I/O rate is high relative to its computation, MOSIX migrates it
back home to end that overhead. Here a job goes home when the seconds its I/O would waste away
from home over its expected remaining time, less any CPU time it loses by running at home,
exceed the migration's cost; never with `-c` (`stay_on_syscalls`) or when it is locked, and
not within the balancer's hysteresis after its last move. The balancer in turn never sends an
I/O-heavy job away from home, so the two cannot ping-pong.
"""

from __future__ import annotations

from mosix.policy import balancing, decisions, ledger, placement, snapshot


def io_saved(job: snapshot.JobView, now: float, cluster: snapshot.ClusterView) -> float:
    """Seconds of forwarding overhead the job would pay over its expected remaining time away."""
    return job.io_rate_kbps / 1024.0 * balancing.remaining(job, now) * cluster.remote_io_s_per_mb


def slowdown(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView, home: snapshot.NodeView) -> float:
    """Seconds the job would lose by computing at home rather than where it is (0 if home is faster)."""
    before = placement.unit_time(source, max(led.load[source.name], job.cpu_demand))
    after = placement.unit_time(home, led.load[home.name] + job.cpu_demand)
    return balancing.remaining(job, led.now) * max(0.0, after / before - 1.0)


def worth(led: ledger.Ledger, job: snapshot.JobView, source: snapshot.NodeView, home: snapshot.NodeView) -> bool:
    """Does going home save more than it costs? I/O saved, less CPU lost, beyond the migration cost."""
    net = io_saved(job, led.now, led.cluster) - slowdown(led, job, source, home)
    return net > balancing.cost(job, led.cluster)


def home_into(led: ledger.Ledger) -> list[decisions.Migration]:
    """Migrate home every movable, I/O-bound job running away whose move home pays for itself,
    in name order (deterministic); home must be up and keep its memory reserve with the job."""
    moves: list[decisions.Migration] = []
    running = led.in_state(snapshot.JobState.RUNNING) if led.index is None or led.cluster.io_home_kbps <= 0 else [
        j for j in led.apart() if j.state is snapshot.JobState.RUNNING]  # the index keeps I/O jobs away apart
    for job in sorted(running, key=lambda j: j.name):
        if job.name in led.decided or job.home is None or job.node is None or job.node == job.home:
            continue
        if not balancing.io_bound(job, led.cluster) or not balancing.movable(job, led.now, led.cluster):
            continue
        home, source = led.nodes.get(job.home), led.nodes.get(job.node)
        if (
            home is None
            or source is None
            or not home.alive
            or not placement.fits(led, home, job, slot=False, reserve_mb=led.cluster.memory_reserve_mb)
        ):
            continue
        if not worth(led, job, source, home):
            continue
        led.move(job, source.name, home.name)
        led.decided.add(job.name)
        moves.append(decisions.Migration(job.name, source.name, home.name, decisions.MigrationReason.IO))
    return moves


def bring_home(snap: snapshot.Snapshot) -> list[decisions.Migration]:
    """`home_into` on a fresh ledger of `snap`."""
    return home_into(ledger.Ledger(snap))
