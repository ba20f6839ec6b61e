"""mosrun: run a program under the MOSIX discipline, with the tutorial's exact flag syntax.

MOSIX flags carry their values attached (-rmos1, -q60, -m1000, -E/tmp, -O3=/path); node
numbers and addresses are flags themselves (-3, -132.65.174.1). No option library parses
that, so this module does, from one table of flags.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import pathlib
import re
import shlex
import sys
import threading
from collections.abc import Callable

import pydantic

from mosix.api import job
from mosix.cli import common, homeinput, logs, usage
from mosix.client import client

USAGE = (
    """usage: mosrun [options] program [arguments]
       mosrun -S{max} commands-file      mosrun -I{checkpoint}      mosrun -R{checkpoint} [-O{fd}={file},...]
where to start:  -r{host}  -{n}  -{a.b.c.d}  -h (home)  -b (best)  -j{n1-n2[,n3-n4...]}
where it may go: -G[{class}]  -m{MB}  -L (no automatic migration)
queue:           -q[{pri}] or -Q[{pri}]  -P{n} (gang of n)  -J{job-id}  -D{DD:HH:MM} (expected duration)
batch:           -E[/dir] (native Linux)  -M[/dir] (MOSIX, home elsewhere)
unsupported:     -e (continue)  -w (continue and warn)
checkpoints:     -C{base}  -A{minutes}  -N{max}   files: -X{dir} (private, migrate with the job)
I/O:             -t (time from the hosting node)  -c (never home for system calls)  -d[{decay}]  -i (stdin)
long options:    --image IMAGE  --name NAME  --home NODE  --env K=V  --detach
"""
    + common.HELP
)

NODE_NUMBER = re.compile(r"^[0-9]+$")
NODE_IP = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")
REQUIRED = {  # flags whose value must be attached, and what it is
    "r": "a host name attached, e.g. -rmos1",
    "m": "the memory in MB attached, e.g. -m1000",
    "J": "a job id attached, e.g. -J20",
    "P": "the number of processes attached, e.g. -P4",
    "S": "the most lines to run at once, e.g. -S4 commands-file",
    "C": "a file base name attached, e.g. -C/tmp/ckpt",
    "A": "minutes attached, e.g. -A20",
    "N": "the most checkpoints attached, e.g. -N5",
    "I": "a checkpoint file attached, e.g. -I/tmp/ckpt.1",
    "R": "a checkpoint file attached, e.g. -R/tmp/ckpt.1",
    "O": "fd=file pairs attached, e.g. -O3=/path",
}
RANGES = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")


@dataclasses.dataclass
class Request:
    """What one mosrun command line asks for."""

    spec: job.MosixJobSpec | None = None
    inspect: str | None = None
    detach: bool = False
    name: str | None = None
    command_line: str = ""
    common: common.Common = dataclasses.field(default_factory=common.Common)


def _int(flag: str, value: str, what: str, low: int, high: int) -> int:
    if not value.isdigit():
        raise usage.UsageError(flag, f"{what} must be a whole number {low}-{high} (got {value!r})")
    number = int(value)
    if not low <= number <= high:
        raise usage.UsageError(flag, f"{what} must be {low}-{high} (got {number})")
    return number


def _ranges(flag: str, value: str) -> list[job.NodeRange]:
    if not RANGES.match(value):
        raise usage.UsageError(flag, f"node ranges look like -j1-4,7-9 (got {value!r})")
    found = []
    for part in value.split(","):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo < 1 or lo > hi:
            raise usage.UsageError(flag, f"range {part!r} must run from a node number >= 1 upwards")
        found.append(job.NodeRange(first=lo, last=hi))
    return found


def _fd_remap(flag: str, value: str) -> list[job.FdRemap]:
    found = []
    for pair in value.split(","):
        fd, eq, path = pair.strip().partition("=")
        if not eq or not fd.isdigit() or not path:
            raise usage.UsageError(flag, f"expected fd=file pairs like -O3=/path,4=/other (got {pair!r})")
        found.append(job.FdRemap(fd=int(fd), path=path))
    return found


def _dir(flag: str, value: str) -> str:
    if not value.startswith("/"):
        raise usage.UsageError(flag, f"needs an absolute directory like {flag}/tmp (got {value!r})")
    return value


def _due(flag: str, value: str, now: datetime.datetime) -> str:
    """-D{[[DD:]HH:]MM}: the job's expected duration, stored as the UTC minute it is due (mosps DUE)."""
    parts = value.split(":")
    if not value or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise usage.UsageError(flag, f"needs the expected duration attached as DD:HH:MM, HH:MM or MM (got {value!r})")
    minutes = sum(int(p) * unit for p, unit in zip(reversed(parts), (1, 60, 1440), strict=False))
    due = now.astimezone(datetime.UTC) + datetime.timedelta(minutes=minutes)
    return due.isoformat(timespec="minutes").replace("+00:00", "Z")


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def parse(
    argv: list[str],
    *,
    cwd: str | None = None,
    user: str | None = None,
    read_lines: Callable[[str], list[str]] = _read_lines,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> Request:
    """Parses mosrun's command line into the job it asks for; UsageError names the bad flag."""
    req = Request(command_line=shlex.join(["mosrun", *argv]))
    fields: dict[str, object] = {}
    placement: tuple[str, job.Placement] | None = None
    commands_max: int | None = None
    ckpt: dict[str, object] = {}
    recover_from: str | None = None
    remap: tuple[str, list[job.FdRemap]] | None = None
    private: list[str] = []
    env: dict[str, str] = {}
    batch_dir: str | None = None

    def place(flag: str, how: job.Placement, **values: object) -> None:
        nonlocal placement
        if placement is not None:
            raise usage.UsageError(flag, f"conflicts with {placement[0]}: give one node-assignment option")
        placement = (flag, how)
        fields.update(placement=how, **values)

    def once(flag: str, key: str, value: object) -> None:
        if key in fields:
            raise usage.UsageError(flag, "given twice")
        fields[key] = value

    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        used = common.take(argv, i, req.common, allow_output=False)
        if used:
            i += used
            continue
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if name in ("--image", "--name", "--home", "--env"):
                if not eq:
                    if i + 1 >= len(argv):
                        raise usage.UsageError(name, "needs a value")
                    value, i = argv[i + 1], i + 1
                if not value:
                    raise usage.UsageError(name, "needs a value")
                if name == "--image":
                    once(name, "image", value)
                elif name == "--name":
                    req.name = value
                elif name == "--home":
                    once(name, "home_node", value)
                else:
                    key, eq2, val = value.partition("=")
                    if not eq2 or not key:
                        raise usage.UsageError(name, f"expected KEY=VALUE (got {value!r})")
                    env[key] = val
            elif word == "--detach":
                req.detach = True
            else:
                raise usage.UsageError(word, "unknown option")
            i += 1
            continue
        letter, value = word[1], word[2:]
        flag = word if letter.isdigit() else f"-{letter}"
        if letter in REQUIRED and not value:
            raise usage.UsageError(flag, f"needs {REQUIRED[letter]}")
        if letter.isdigit():
            target = word[1:]
            if NODE_NUMBER.match(target):
                place(word, job.Placement.NODE, node=str(_int(word, target, "node number", 1, 65535)))
            elif NODE_IP.match(target) and all(int(p) <= 255 for p in target.split(".")):
                place(word, job.Placement.NODE, node=target)
            else:
                raise usage.UsageError(word, "not a node number (-3) or IP address (-132.65.174.1)")
        elif letter in "hbewLtci":
            if value:
                raise usage.UsageError(flag, f"takes no value (got {word!r})")
            if letter == "h":
                place(flag, job.Placement.HOME)
            elif letter == "b":
                place(flag, job.Placement.BEST)
            elif letter in "ew":
                once(flag, "unsupported", job.Unsupported.CONTINUE if letter == "e" else job.Unsupported.WARN)
            elif letter == "L":
                once(flag, "locked", True)
            elif letter == "t":
                once(flag, "host_time", True)
            elif letter == "c":
                once(flag, "stay_on_syscalls", True)
            elif letter == "i":
                once(flag, "stdin", True)
        elif letter == "r":
            if not re.match(job.NODE_REF_PATTERN, value):
                raise usage.UsageError(flag, f"not a valid host name: {value!r}")
            place(flag, job.Placement.NODE, node=value)
        elif letter == "j":
            place(flag, job.Placement.RANGE, node_ranges=_ranges(flag, value))
        elif letter == "G":
            once(flag, "grid_class", _int(flag, value, "grid class", 0, 65535) if value else 1)
        elif letter == "m":
            once(flag, "memory_mb", _int(flag, value, "memory (MB)", 1, 16777216))
        elif letter == "J":
            once(flag, "job_id", _int(flag, value, "job id", 0, 2147483647))
        elif letter in "qQ":  # the tutorial's "-q / -Q": both queue the job
            priority = _int(flag, value, "priority", 0, job.MAX_PRIORITY) if value else None
            once(flag, "queue", job.Queue(priority=priority))
        elif letter == "P":
            once(flag, "parallel", _int(flag, value, "process count", 1, 100000))
        elif letter == "S":
            commands_max = _int(flag, value, "max running lines", 1, 100000)
        elif letter in "EM":
            if "batch" in fields:
                raise usage.UsageError(flag, "conflicts with the other batch option (-E or -M): give one")
            fields["batch"] = job.BatchMode.NATIVE if letter == "E" else job.BatchMode.MOSIX
            if value:
                batch_dir = _dir(flag, value)
        elif letter == "C":
            ckpt["base"] = value
        elif letter == "A":
            ckpt["interval_minutes"] = _int(flag, value, "checkpoint interval (minutes)", 1, 525600)
        elif letter == "N":
            ckpt["max_sets"] = _int(flag, value, "checkpoint count", 1, 1000)
        elif letter == "I":
            req.inspect = value
        elif letter == "R":
            recover_from = value
        elif letter == "O":
            remap = (flag, _fd_remap(flag, value))
        elif letter == "X":
            private.append(_dir(flag, value))
        elif letter == "d":
            once(flag, "io_decay", _int(flag, value, "decay", 0, 10000) if value else 0)
        elif letter == "D":
            once(flag, "due", _due(flag, value, now()))
        else:
            raise usage.UsageError(word, "unknown option")
        i += 1

    program = argv[i:]
    if req.common.help:
        return req
    if req.inspect is not None:
        if program or len([w for w in argv if w.startswith("-")]) > 1:
            raise usage.UsageError("-I", "inspects a checkpoint; give it alone")
        return req
    if remap is not None and recover_from is None:
        raise usage.UsageError(remap[0], "remaps descriptors of a recovered program: use it with -R{checkpoint}")
    if commands_max is not None:
        if len(program) != 1:
            raise usage.UsageError("-S", "needs exactly one commands file after the options")
        try:
            lines = [
                shlex.split(line)
                for line in read_lines(program[0])
                if line.strip() and not line.lstrip().startswith("#")
            ]
        except OSError as e:
            raise usage.UsageError("-S", f"cannot read commands file {program[0]!r}: {e.strerror}") from e
        except ValueError as e:
            raise usage.UsageError("-S", f"bad line in commands file {program[0]!r}: {e}") from e
        if not lines:
            raise usage.UsageError("-S", f"commands file {program[0]!r} has no command lines")
        fields["commands"] = job.CommandSet(max_running=commands_max, lines=lines)
        program = []
    elif recover_from is not None:
        if program:
            raise usage.UsageError("-R", "continues the checkpointed program: give no program with it")
        fields["recover"] = job.Recover(from_checkpoint=recover_from, fd_remap=remap[1] if remap else [])
    elif not program:
        raise usage.UsageError("", "no program given")
    if fields.get("parallel", 1) != 1 and "queue" not in fields:
        raise usage.UsageError("-P", "parallel jobs are released by the queue: add -q (or -Q)")
    if fields.get("batch") == job.BatchMode.NATIVE and int(str(fields.get("grid_class", 0))) > 0:
        raise usage.UsageError("-G", "a native batch job (-E) cannot go to the grid")
    if ckpt:
        fields["checkpoint"] = job.CheckpointPolicy.model_validate(ckpt)
    fields.update(
        command=program,
        working_dir=batch_dir or cwd or os.getcwd(),
        user=user or getpass.getuser(),
        private_dirs=private,
        env=env,
    )
    if "home_node" not in fields and common.here():
        fields["home_node"] = common.here()
    try:
        req.spec = job.MosixJobSpec.model_validate(fields)
    except pydantic.ValidationError as e:
        raise usage.UsageError("", str(e)) from e
    return req


def follow(api: client.Client, name: str) -> int:
    """Foreground mosrun: the job's output as it arrives home, then its exit code."""
    current = logs.follow(api, name, need_output=False)
    if current.status.message and current.status.phase == job.Phase.FAILED:
        print(f"mosrun: {current.status.message}", file=sys.stderr)
    return current.status.exit_code if current.status.exit_code is not None else 1


def inspect(checkpoint: str) -> int:
    """mosrun -I{set}: the files the process had open when the checkpoint was taken, read from its images."""
    from mosix.agent import checkpoints, criu, errors

    path = pathlib.Path(checkpoint)
    if not path.is_dir():
        raise usage.Refused(f"-I: no checkpoint set at {checkpoint}")
    try:
        descriptors = criu.inspect(path / checkpoints.IMAGES)
    except errors.AgentError as e:
        raise usage.Refused(f"-I: {e}") from e
    for d in descriptors:
        print(d.describe())
    return 0


def _main(argv: list[str]) -> int:
    req = parse(argv)
    if req.common.help:
        print(USAGE)
        return 0
    if req.inspect is not None:
        return inspect(req.inspect)
    api = req.common.connect()
    assert req.spec is not None
    created = api.submit(req.spec, name=req.name, annotations={client.COMMAND_LINE_ANNOTATION: req.command_line})
    if req.spec.stdin and req.detach:  # nobody stays to forward it later: hand all of it over first
        homeinput.forward(api, created.name)
    if req.detach:
        print(created.name)
        return 0
    if req.spec.stdin:
        threading.Thread(target=_forward_quietly, args=(api, created.name), name="stdin", daemon=True).start()
    return follow(api, created.name)


def _forward_quietly(api: client.Client, name: str) -> None:
    """mosrun -i in the foreground: input goes home while the output comes back; a failure is reported."""
    try:
        homeinput.forward(api, name)
    except (usage.Refused, OSError) as e:
        print(f"mosrun: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return usage.run("mosrun", USAGE, _main, argv)
