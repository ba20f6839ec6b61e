"""One decision round: the policy modules called in a fixed order on one ledger.

The order is the priority of concerns: lost jobs first, then the administrator's expel,
then jobs waiting to continue, then new starts, then memory ushering, I/O-heavy jobs home
and load balancing, and freezing last, so a node is only relieved by freezing what moving
could not relieve.
"""

from __future__ import annotations

from mosix.policy import balancing, decisions, freezing, homing, ledger, queue, recovery, snapshot


def decide(snap: snapshot.Snapshot) -> decisions.Decisions:
    """Everything the control plane should do now, given `snap`."""
    led = ledger.Ledger(snap)
    recoveries, failures, lost_waits, restarts = recovery.recover_into(led)
    expel_moves, expel_freezes = freezing.expel_into(led)
    continues = freezing.continue_into(led)
    admissions, waits = queue.admit_into(led)
    moves = balancing.usher_into(led) + homing.home_into(led) + balancing.balance_into(led)
    freezes = freezing.freeze_into(led)
    return decisions.Decisions(
        admissions=tuple(restarts + admissions),
        migrations=tuple(expel_moves + moves),
        freezes=tuple(expel_freezes + freezes),
        continues=tuple(continues),
        recoveries=tuple(recoveries),
        failures=tuple(failures),
        waits=tuple(lost_waits + waits),
    )
