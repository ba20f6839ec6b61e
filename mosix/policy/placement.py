"""Which node a job may run on, and which is best.

Node references resolve like mosrun's: a number (-3), an IP (-132.65.174.1) or a name
(-rmos1). "Best" ranks nodes by the time a unit of the job's work would take there once
it is placed, so speed and load trade off the way the job feels them.
"""

from __future__ import annotations

import hashlib
import re

from mosix.policy import ledger, snapshot

_IP = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")


def resolve(led: ledger.Ledger, ref: str) -> snapshot.NodeView | None:
    """The node `ref` names: a node number, an IP address or a node name."""
    if ref.isdigit():
        return led.by_number.get(int(ref))
    if _IP.match(ref):
        return led.by_address.get(ref)
    return led.nodes.get(ref)


def allowed(led: ledger.Ledger, node: snapshot.NodeView, job: snapshot.JobView) -> bool:
    """Node policies alone: may `job` ever be sent to `node` now, memory and load aside?

    Dead, blocked, expelling, non-accepting and dontgo nodes take nothing; class 0 stays in
    this cluster and off outsider nodes; grid nodes respect their guest limit; a job whose
    home is a dont_take node is not taken anywhere but home.
    """
    if not node.alive or node.block or node.expel or not node.accept or node.dontgo:
        return False
    if job.grid_class == 0 and (not node.local or node.outsider):
        return False
    if led.is_guest(job, node) and led.guests[node.name] >= node.guests_max:
        return False
    if job.home is not None and job.home != node.name:
        home = led.nodes.get(job.home)
        if home is not None and home.dont_take:
            return False
    return True


def arrival_refused(node: snapshot.NodeView | None, home: str | None) -> str | None:
    """Why `node`'s own policy refuses a requested move of a job whose home is `home` there (None: it may
    come): a blocked or expelling node, or one not accepting, takes no guests (mosctl block, expel); a job
    going home is no guest and always may. Which nodes exist and are up is the agents' to find."""
    if node is None or node.name == home:
        return None
    for refused, why in ((node.block, "blocked"), (node.expel, "expelling its guests"),
                         (not node.accept, "not accepting guests")):
        if refused:
            return f"node {node.name} is {why}"
    return None


def fits(led: ledger.Ledger, node: snapshot.NodeView, job: snapshot.JobView, *,
         slot: bool, reserve_mb: int = 0) -> bool:
    """Resources: the job's memory need (plus `reserve_mb`) is free, and a CPU if `slot`."""
    if led.free_mb[node.name] - job.memory_mb < reserve_mb:
        return False
    return not slot or led.load[node.name] + job.cpu_demand <= node.cpus + ledger.EPSILON


def eligible(led: ledger.Ledger, node: snapshot.NodeView, job: snapshot.JobView, *,
             slot: bool, reserve_mb: int = 0) -> bool:
    """`allowed` and `fits` together."""
    return allowed(led, node, job) and fits(led, node, job, slot=slot, reserve_mb=reserve_mb)


def unit_time(node: snapshot.NodeView, load: float) -> float:
    """Seconds per unit of work for one process on `node` carrying `load` processes."""
    return ledger.unit_time(node, load)


def candidates(led: ledger.Ledger, job: snapshot.JobView, *, slot: bool, exclude: str | None = None,
               reserve_mb: int = 0, limit: int = 1) -> list[snapshot.NodeView]:
    """Up to `limit` eligible nodes, best first by `ledger.Ledger.rank`.

    Walks the ledger's rank heap, so a round placing many jobs does not rescan every node
    for each.
    """
    def accept(node: snapshot.NodeView) -> bool:
        return node.name != exclude and eligible(led, node, job, slot=slot, reserve_mb=reserve_mb)

    return led.first_ranked(led.ranked(job.cpu_demand, slot), accept, limit)


def best(led: ledger.Ledger, job: snapshot.JobView, *, slot: bool, exclude: str | None = None,
         reserve_mb: int = 0) -> snapshot.NodeView | None:
    """The eligible node ranked first by `ledger.Ledger.rank`, or None."""
    found = candidates(led, job, slot=slot, exclude=exclude, reserve_mb=reserve_mb)
    return found[0] if found else None


def seed(name: str) -> int:
    """A stable pseudo-random number for a job: mosrun -j's random pick, made repeatable."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def in_ranges(led: ledger.Ledger, job: snapshot.JobView, *, slot: bool) -> snapshot.NodeView | None:
    """A node of the job's ranges (-j), picked by the job's seed among the eligible ones."""
    numbers = sorted({n for first, last in job.ranges for n in range(first, last + 1) if n in led.by_number})
    candidates = [led.by_number[n] for n in numbers if eligible(led, led.by_number[n], job, slot=slot)]
    if not candidates:
        return None
    return candidates[seed(job.name) % len(candidates)]


def choose(led: ledger.Ledger, job: snapshot.JobView, *, slot: bool) -> snapshot.NodeView | None:
    """Where `job` starts, by its placement kind; None when nowhere will do this round.

    Home starts on the home node whenever it is eligible, even busy (the balancer spreads
    load afterwards, as in MOSIX), else on the best node; Node and Range never fall back.
    """
    kind = job.placement
    if kind is snapshot.PlacementKind.NODE:
        node = resolve(led, job.node_ref) if job.node_ref is not None else None
        return node if node is not None and eligible(led, node, job, slot=slot) else None
    if kind is snapshot.PlacementKind.RANGE:
        return in_ranges(led, job, slot=slot)
    if kind is snapshot.PlacementKind.HOME and job.home is not None:
        home = led.nodes.get(job.home)
        if home is not None and eligible(led, home, job, slot=False):
            return home
    return best(led, job, slot=slot)


def place(snap: snapshot.Snapshot, job: snapshot.JobView, *, slot: bool = False) -> str | None:
    """The node `job` would start on in `snap`, by name, or None."""
    node = choose(ledger.Ledger(snap), job, slot=slot)
    return None if node is None else node.name
