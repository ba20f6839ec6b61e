"""mosq: view and control the cluster's queue (list, listall, delete, run, cngpri, advance, retard)."""

from __future__ import annotations

from mosix.api import job
from mosix.cli import columns, common, output, usage
from mosix.client import client
from mosix.controller import views
from mosix.policy import queue

USAGE = (
    """usage: mosq list                      jobs waiting in the queue
       mosq listall                   jobs running from the queue, and those waiting
       mosq delete {pid}              delete a waiting job
       mosq run {pid}                 run a waiting job now
       mosq cngpri {newpri} {pid}     change the priority of a waiting job
       mosq advance {pid}             move a waiting job to the head of its priority group
       mosq retard {pid}              move a waiting job to the end of its priority group
"""
    + common.HELP
)

ARITY = {"list": 0, "listall": 0, "delete": 1, "run": 1, "cngpri": 2, "advance": 1, "retard": 1}


def parse(argv: list[str]) -> tuple[str, list[str], common.Common]:
    opts = common.Common()
    words = common.rest(argv, opts)
    for word in words:
        if word.startswith("-") and not word.lstrip("-").isdigit():
            raise usage.UsageError(word, "unknown option")
    if opts.help:
        return "help", [], opts
    if not words:
        raise usage.UsageError("", "which operation? (list, listall, delete, run, cngpri, advance, retard)")
    op, args = words[0].lower(), words[1:]
    if op not in ARITY:
        raise usage.UsageError(words[0], "unknown operation (list, listall, delete, run, cngpri, advance, retard)")
    if len(args) != ARITY[op]:
        need = "{newpri} {pid}" if op == "cngpri" else "{pid}" if ARITY[op] else "nothing"
        raise usage.UsageError(op, f"takes {need} (got {len(args)} argument{'s' if len(args) != 1 else ''})")
    if op == "cngpri" and (not args[0].isdigit() or int(args[0]) > job.MAX_PRIORITY):
        raise usage.UsageError(
            "cngpri", f"new priority must be a whole number 0-{job.MAX_PRIORITY} (got {args[0]!r})"
        )
    return op, args, opts


def ordered(jobs: list[job.MosixJob], default: int) -> list[job.MosixJob]:
    """Waiting jobs in queue order: the policy core's one comparator decides."""
    by_name = {j.name: j for j in jobs}
    return [by_name[v.name] for v in queue.order([views.job_view(j) for j in jobs], default)]


def render(jobs: list[job.MosixJob], default: int, names: columns.NodeNames, *, listall: bool) -> str:
    running = [
        j for j in jobs if j.spec.queue is not None and not columns.is_waiting(j) and not j.status.phase.finished
    ]
    waiting = ordered([j for j in jobs if columns.is_waiting(j)], default)
    shown = (sorted(running, key=lambda j: j.name.zfill(20)) if listall else []) + waiting
    rows = []
    for j in shown:
        pri = str(columns.priority(j, default)) if columns.is_waiting(j) else "RUN"
        rows.append(
            [
                j.name,
                j.spec.user or "-",
                j.spec.memory_mb or "-",
                "YES" if j.spec.grid_class > 0 else "NO",
                pri,
                columns.home(j, names),
                columns.command_line(j),
            ]
        )
    return output.table(["PID", "USER", "MEM(MB)", "GRID", "PRI", "FROM", "COMMAND"], rows)


def _waiting(api: client.Client, ref: str) -> job.MosixJob:
    found = api.get_job(ref)
    if not columns.is_waiting(found):
        raise usage.Refused(f"job {ref} is not waiting in the queue ({found.status.phase.value})")
    return found


def _main(argv: list[str]) -> int:
    op, args, opts = parse(argv)
    if op == "help":
        print(USAGE)
        return 0
    api = opts.connect()
    default = api.get_cluster().spec.queue.default_priority
    if op in ("list", "listall"):
        jobs = api.jobs()
        if opts.output != "table":
            output.objects(
                [j.wire() for j in ordered([j for j in jobs if j.spec.queue is not None], default)], opts.output
            )
            return 0
        names = columns.NodeNames(tuple(api.nodes()), common.here(), "short")
        print(render(jobs, default, names, listall=op == "listall"), end="")
        return 0
    target = _waiting(api, args[-1])
    if op == "delete":
        api.delete_job(target.name)
    elif op == "run":
        api.patch_job(target.name, {"queue": {"runNow": True}})
    elif op == "cngpri":
        api.patch_job(target.name, {"queue": {"priority": int(args[0])}})
    else:
        waiting = [views.job_view(j) for j in api.jobs() if columns.is_waiting(j)]
        move = queue.advance if op == "advance" else queue.retard
        api.patch_job(target.name, {"queue": {"position": move(waiting, target.name, default)}})
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("mosq", USAGE, _main, argv)
