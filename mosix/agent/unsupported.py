"""Unsupported features: a CRIU refusal that names something in the job it cannot checkpoint.

MOSIX kills a process that uses an unsupported feature unless it runs with -e (continue) or -w
(continue and warn). Here the feature is found when a dump is tried: CRIU's dump log names it
(e.g. "Can't dump file 3 of that type [600] (anon anon_inode:[perf_event])"). Only such
refusals about the job itself count: a failure of the machine (disk, peer, iptables, a CRIU too
old for the kernel) does not make a job unmigratable.

runc checkpoints without --tcp-established, --ext-unix-sk or --skip-in-flight (runc.criu_env's
config adds none), so a job's TCP connections and unix sockets to outside it are refusals too.
"""

from __future__ import annotations

import pathlib
import re

from mosix.agent import errors

# CRIU's words for "this process holds something I cannot dump" (its pr_err in the source file
# named, as of CRIU 4.1), and what users read: a phrase filled from the pattern's named groups.
_REFUSALS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    # files-ext.c: a file of a kind CRIU has no dumper for (perf_event, io_uring, ...)
    (r"Can't dump file (?P<fd>\d+) of that type \[\w+\] \((?:anon )?(?P<what>[^)]*\)?)\)", "fd {fd} is {what}"),
    # sk-inet.c
    (r"Connected TCP socket, consider using --tcp-established", "a connected TCP socket"),
    (r"In-flight connection \(l\) for ", "a TCP connection not yet accepted"),
    (r"Unsupported proto (?P<proto>\d+) for socket ", "a socket of IP protocol {proto}"),
    (r"Can't dump corked dgram socket ", "a corked UDP socket"),
    # sk-unix.c
    (r"External socket is used\. Consider using --ext-unix-sk", "a unix socket connected outside the job"),
    # sk-queue.c
    (r"Control messages in queue, not supported", "control messages queued on a unix socket"),
    # pipes.c
    (r"The packetized mode for pipes is not supported", "a packet-mode (O_DIRECT) pipe"),
    # namespaces.c: a namespace the job made inside its container (unshare -u, -i, ...)
    (r"Can't dump nested (?P<ns>\w+) namespace for ", "a nested {ns} namespace"),
))


class Unsupported(errors.CheckpointError):
    """CRIU refused to checkpoint the job because of something it holds; `reason` names it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot be checkpointed: {reason}")


def reason_in(log_text: str) -> str | None:
    """The unsupported feature a CRIU dump log names, as a short phrase; None if it names none."""
    for line in log_text.splitlines():
        for pattern, reason in _REFUSALS:
            m = pattern.search(line)
            if m is not None:
                return reason.format(**{k: v.strip() for k, v in m.groupdict().items()})
    return None


def classify(error: errors.AgentError, dump_log: pathlib.Path) -> errors.AgentError:
    """`Unsupported` if the dump's log names an unsupported feature, else the error as it was."""
    try:
        text = dump_log.read_text(errors="replace")
    except OSError:
        text = ""
    reason = reason_in(text + "\n" + str(error))
    return Unsupported(reason) if reason else error
