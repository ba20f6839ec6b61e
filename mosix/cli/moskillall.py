"""moskillall: signal all your MOSIX processes, or those of one job id; queued ones leave the queue."""

from __future__ import annotations

import dataclasses
import getpass
import re
import signal

from mosix.api import job
from mosix.cli import columns, common, usage

USAGE = (
    """usage: moskillall [-{signal}] [-J{job-id}]     default signal: TERM (e.g. -9, -KILL, -SIGINT)
"""
    + common.HELP
)


@dataclasses.dataclass
class Request:
    signal: str
    job_id: int | None
    common: common.Common


def signal_name(word: str) -> str:
    """-9, -KILL or -SIGKILL → KILL; unknown signals are usage errors."""
    raw = word[1:].upper()
    if raw.isdigit():
        try:
            return signal.Signals(int(raw)).name.removeprefix("SIG")
        except ValueError:
            raise usage.UsageError(word, f"no signal number {raw}") from None
    name = raw if raw.startswith("SIG") else f"SIG{raw}"
    if name not in signal.Signals.__members__:
        raise usage.UsageError(word, f"unknown signal {raw!r}")
    return name.removeprefix("SIG")


def parse(argv: list[str]) -> Request:
    opts = common.Common()
    req = Request("TERM", None, opts)
    seen_signal = False
    for word in common.rest(argv, opts, allow_output=False):
        if word.startswith("-J"):
            req.job_id = common.job_id(word)
        elif re.match(r"^-[A-Za-z0-9+]+$", word):
            if seen_signal:
                raise usage.UsageError(word, "give one signal")
            req.signal, seen_signal = signal_name(word), True
        else:
            raise usage.UsageError(word, "unexpected argument" if not word.startswith("-") else "unknown option")
    return req


def _main(argv: list[str]) -> int:
    req = parse(argv)
    if req.common.help:
        print(USAGE)
        return 0
    api = req.common.connect()
    me = getpass.getuser()
    for j in api.jobs():
        if j.status.phase.finished or j.spec.user not in (None, me):
            continue
        if req.job_id is not None and j.spec.job_id != req.job_id:
            continue
        if columns.is_waiting(j):
            api.delete_job(j.name)
            continue
        serial = (j.spec.signal.serial if j.spec.signal else 0) + 1
        api.patch_job(j.name, {"signal": job.SignalRequest(signal=req.signal, serial=serial).wire()})
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("moskillall", USAGE, _main, argv)
