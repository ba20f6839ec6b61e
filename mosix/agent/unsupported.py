"""Unsupported features: a CRIU refusal that names something in the job it cannot checkpoint.

MOSIX kills a process that uses an unsupported feature unless it runs with -e (continue) or -w
(continue and warn). Here the feature is found when a dump is tried: CRIU's dump log names it
(e.g. "Can't dump file 3 of that type [600] (anon anon_inode:[perf_event])"). Only such
refusals about the job itself count: a failure of the machine (disk, peer, iptables) does not
make a job unmigratable.
"""

from __future__ import annotations

import pathlib
import re

from mosix.agent import errors

# CRIU's words for "this process holds something I cannot dump", with what to report.
_PATTERNS = (re.compile(r"Can't dump file (?P<fd>\d+) of that type \[\w+\] \((?P<what>[^)]*\)?)\)"),)


class Unsupported(errors.CheckpointError):
    """CRIU refused to checkpoint the job because of something it holds; `reason` names it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot be checkpointed: {reason}")


def reason_in(log_text: str) -> str | None:
    """The unsupported feature a CRIU dump log names, as a short phrase; None if it names none."""
    for line in log_text.splitlines():
        for pattern in _PATTERNS:
            m = pattern.search(line)
            if m is None:
                continue
            groups = m.groupdict()
            what = groups["what"].removeprefix("anon ").strip()
            return f"fd {groups['fd']} is {what}" if groups.get("fd") else what
    return None


def classify(error: errors.AgentError, dump_log: pathlib.Path) -> errors.AgentError:
    """`Unsupported` if the dump's log names an unsupported feature, else the error as it was."""
    try:
        text = dump_log.read_text(errors="replace")
    except OSError:
        text = ""
    reason = reason_in(text + "\n" + str(error))
    return Unsupported(reason) if reason else error
