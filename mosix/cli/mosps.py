"""mosps: MOSIX processes with WHERE, FROM, ORIGPID, CLASS, FRZ, DUE, NMIGS (ps-style flags).

The columns are the tutorial's. A job CRIU cannot checkpoint shows FRZ N/A ("can't be frozen"), and under
the table a line says why, as CRIU named it: "24090: not migratable: a connected TCP socket".
"""

from __future__ import annotations

import collections.abc
import dataclasses
import getpass
import os

from mosix.api import job
from mosix.cli import columns, common, output, usage

USAGE = (
    """usage: mosps [-AeIhMLOnVPD] [-J{job-id}] [-u user[,user...]] [-p pid[,pid...]]
  -A, -e  every user's processes (default: only yours); on Kubernetes, of every namespace
          unless --namespace or $MOSIX_NAMESPACE names one
  -u      only these users' processes    -p  only these processes (1001: all of job 1001; 1001.2: one)
  -I      nodes as IP addresses          -h  nodes as host names
  -M      only the last component of host names
  -L      only local processes           -O  only local processes that are away
  -V      only guest processes           -n  show NMIGS
  -P      show ORIGPID                   -D  show DUE
  -J{id}  only processes with this job id
"""
    + common.HELP
)


@dataclasses.dataclass
class Options:
    all_users: bool = False
    style: str = "host"
    local_only: bool = False
    away_only: bool = False
    guests_only: bool = False
    nmigs: bool = False
    origpid: bool = False
    due: bool = False
    job_id: int | None = None
    users: tuple[str, ...] = ()
    pids: tuple[str, ...] = ()
    common: common.Common = dataclasses.field(default_factory=common.Common)


def parse(argv: list[str]) -> Options:
    """ps-style: letters may be grouped (-AMn); -J takes the rest of its word (-J20); -u and -p take
    the rest of their word or the next word, a comma-separated list (-u llor,ann; -p1001)."""
    opts = Options()
    words = common.rest(argv, opts.common)
    while words:
        word = words.pop(0)
        if not word.startswith("-") or word == "-" or word.startswith("--"):
            raise usage.UsageError(word, "unknown option" if word.startswith("-") else "unexpected argument")
        letters = word[1:]
        for k, letter in enumerate(letters):
            flag = f"-{letter}"
            if letter in "up":
                listed = letters[k + 1 :] or (words.pop(0) if words else "")
                items = tuple(i for i in listed.split(",") if i)
                if not items:
                    raise usage.UsageError(flag, f"needs a list of {'users' if letter == 'u' else 'process ids'}")
                if letter == "u":
                    opts.users = items
                else:
                    opts.pids = items
                break
            if letter == "J":
                value = letters[k + 1 :]
                if not value.isdigit():
                    raise usage.UsageError("-J", f"needs a job id attached, e.g. -J20 (got {value!r})")
                opts.job_id = int(value)
                break
            if letter in "Ae":
                opts.all_users = True
            elif letter == "I":
                opts.style = "ip"
            elif letter == "h":
                opts.style = "host"
            elif letter == "M":
                opts.style = "short"
            elif letter == "L":
                opts.local_only = True
            elif letter == "O":
                opts.away_only = True
            elif letter == "V":
                opts.guests_only = True
            elif letter == "n":
                opts.nmigs = True
            elif letter == "P":
                opts.origpid = True
            elif letter == "D":
                opts.due = True
            else:
                raise usage.UsageError(flag, "unknown option")
    if sum((opts.local_only, opts.away_only, opts.guests_only)) > 1:
        raise usage.UsageError("-L", "-L, -O and -V choose different processes: give one")
    return opts


@dataclasses.dataclass(frozen=True)
class Row:
    """One process as mosps lists it: a job of one process, or one process of a gang or -S file."""

    j: job.MosixJob
    index: str | None = None

    @property
    def process(self) -> job.ProcessStatus | None:
        return None if self.index is None else self.j.status.processes[self.index]

    key: str = ""  # the job's name in the listing's scope: NAMESPACE/NAME across namespaces

    @property
    def pid(self) -> str:
        name = self.key or self.j.name
        return name if self.index is None else f"{name}.{self.index}"

    @property
    def node(self) -> str | None:
        proc = self.process
        return self.j.status.node if proc is None else proc.node


def rows(j: job.MosixJob, key: str = "") -> list[Row]:
    """The job's live processes: each of a gang's or -S file's started and unfinished ones (by index),
    else the job itself."""
    live = [i for i, p in j.status.processes.items() if not p.phase.finished and p.phase != job.Phase.STOPPED]
    if j.status.processes and not j.status.phase.finished:
        return [Row(j, i, key) for i in sorted(live, key=int)]
    return [Row(j, key=key)]


def select(jobs: list[job.MosixJob], opts: Options, names: columns.NodeNames, me: str,
           key: collections.abc.Callable[[job.MosixJob], str] = lambda j: j.name) -> list[Row]:
    """The processes mosps lists: live ones, filtered by the flags; `key` names a job in the listing."""
    chosen = []
    for j in jobs:
        if j.status.phase.finished:
            continue
        if opts.users and j.spec.user not in opts.users:
            continue
        if not (opts.all_users or opts.users or opts.pids) and j.spec.user not in (None, me):
            continue
        if opts.job_id is not None and j.spec.job_id != opts.job_id:
            continue
        home_here = names.is_here(j.status.home_node or j.spec.home_node or names.here)
        for row in rows(j, key(j)):
            running_here = names.is_here(row.node)
            if opts.local_only and not home_here:
                continue
            if opts.away_only and (not home_here or running_here or row.node is None):
                continue
            if opts.guests_only and (home_here or not running_here):
                continue
            if opts.pids and row.pid not in opts.pids and (row.key or j.name) not in opts.pids:
                continue
            chosen.append(row)
    return sorted(chosen, key=lambda r: (r.j.metadata.namespace or "", r.j.name.zfill(20), int(r.index or 0)))


def render(chosen: list[Row], opts: Options, names: columns.NodeNames) -> str:
    headers = ["PID", "WHERE", "FROM"]
    headers += ["ORIGPID"] if opts.origpid else []
    headers += ["CLASS", "FRZ"]
    headers += ["DUE"] if opts.due else []
    headers += ["NMIGS"] if opts.nmigs else []
    headers += ["TTY", "CMD"]
    out = []
    for r in chosen:
        j, proc = r.j, r.process
        waiting = columns.is_waiting(j)
        where = columns.where(j, names) if proc is None else columns.process_where(proc, names)
        row: list[object] = [r.pid, where, columns.home(j, names)]
        pid = j.status.orig_pid if proc is None else proc.orig_pid
        row += [pid or "-"] if opts.origpid else []
        row += ["N/A" if waiting else columns.class_name(j), columns.frz(j, proc)]
        row += [j.spec.due or "-"] if opts.due else []
        migrations = j.status.migrations if proc is None else proc.migrations
        row += ["N/A" if waiting else migrations] if opts.nmigs else []
        row += ["?", columns.command_line(j, r.index)]
        out.append(row)
    return output.table(headers, out) + _not_migratable(chosen)


def _not_migratable(chosen: list[Row]) -> str:
    """Why each listed job cannot migrate, where CRIU named it: a blank line, then one line a job."""
    why = {r.key or r.j.name: r.j.status.unsupported_reason for r in chosen
           if not r.j.status.migratable and r.j.status.unsupported_reason}
    return "".join(["\n", *(f"{pid}: not migratable: {reason}\n" for pid, reason in why.items())]) if why else ""


def _main(argv: list[str]) -> int:
    opts = parse(argv)
    if opts.common.help:
        print(USAGE)
        return 0
    if opts.all_users and not (opts.common.namespace or os.environ.get("MOSIX_NAMESPACE")):
        opts.common.all_namespaces = True  # -A: every user's, and on Kubernetes users keep to namespaces
    api = opts.common.connect()
    names = columns.NodeNames(tuple(api.nodes()), common.here(), opts.style)
    chosen = select(api.jobs(), opts, names, getpass.getuser(), api.key)
    if opts.common.output != "table":
        output.objects(list({r.key or r.j.name: r.j.wire() for r in chosen}.values()), opts.common.output)
    else:
        print(render(chosen, opts, names), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("mosps", USAGE, _main, argv)
