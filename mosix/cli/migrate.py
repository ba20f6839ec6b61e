"""migrate: move, bring home, freeze, continue or checkpoint a process, or every process of a job id.

A process of a gang (-P) or commands file (-S) is named as mosps lists it, {id}.{index}, and moves,
freezes and continues on its own; a move of the whole job ({id} or -J) moves each of its processes."""

from __future__ import annotations

import dataclasses
import getpass
import re
from typing import Any

from mosix.api import job
from mosix.cli import common, usage
from mosix.client import client, store

USAGE = (
    """usage: migrate {pid} {node-number|ip-address|host-name}   move the process to that node
       migrate {pid} home|freeze|continue|checkpoint|checkstop|exit
       migrate {id}.{index} {node|home|freeze|continue}   one process of a gang (-P) or commands file (-S)
       migrate -J{job-id} ...                               the same for every process of that job id
       --postcopy | --stop-and-copy                         how to move (default: post-copy for large jobs)
"""
    + common.HELP
)

METHODS = {"--postcopy": job.MigrationMethod.POST_COPY, "--stop-and-copy": job.MigrationMethod.STOP_AND_COPY}
ACTIONS = ("home", "freeze", "continue", "checkpoint", "checkstop", "exit")
AFTER = {
    "checkpoint": job.AfterCheckpoint.CONTINUE,
    "checkstop": job.AfterCheckpoint.STOP,
    "exit": job.AfterCheckpoint.EXIT,
}


@dataclasses.dataclass
class Request:
    pid: str | None
    job_id: int | None
    action: str  # one of ACTIONS, or "node"
    node: str | None
    common: common.Common
    method: job.MigrationMethod = job.MigrationMethod.AUTO


def parse(argv: list[str]) -> Request:
    opts = common.Common()
    words: list[str] = []
    job_id: int | None = None
    method_flag: str | None = None
    for word in common.rest(argv, opts, allow_output=False):
        if word in METHODS:
            if method_flag is not None:
                raise usage.UsageError(word, "give --postcopy or --stop-and-copy once")
            method_flag = word
        elif word.startswith("-J"):
            job_id = common.job_id(word, "-J1")
        elif word.startswith("-"):
            raise usage.UsageError(word, "unknown option")
        else:
            words.append(word)
    if opts.help:
        return Request(None, None, "help", None, opts)
    want = 1 if job_id is not None else 2
    if len(words) != want:
        raise usage.UsageError(
            "",
            "give {pid} and a target (a node, home, freeze, continue, checkpoint, "
            "checkstop or exit), or -J{job-id} and a target",
        )
    pid = None if job_id is not None else words[0]
    target = words[-1]
    method = METHODS[method_flag] if method_flag else job.MigrationMethod.AUTO
    if target.lower() in ACTIONS:
        if method_flag and target.lower() != "home":
            raise usage.UsageError(method_flag, "only for a move to a node or home")
        return Request(pid, job_id, target.lower(), None, opts, method)
    if not re.match(job.NODE_REF_PATTERN, target):
        raise usage.UsageError(target, "not a node number, IP address, host name or action")
    return Request(pid, job_id, "node", target, opts, method)


def _serial(current: job.MigrationRequest | job.CheckpointRequest | None) -> int:
    return (current.serial if current is not None else 0) + 1


PROCESS = re.compile(r"^(?P<job>.+)\.(?P<index>0|[1-9][0-9]*)$")


def resolve(api: client.Client, pid: str) -> tuple[job.MosixJob, str | None]:
    """The job `pid` names, and the index of its process when it names one ({id}.{index}, as mosps lists it)."""
    try:
        return api.get_job(pid), None
    except store.NotFound:
        found = PROCESS.match(pid)
        if found is None:
            raise
    owner = api.get_job(found["job"])
    index = found["index"]
    if not job.multi(owner.spec):
        raise usage.Refused(f"job {owner.name} runs one process: give {owner.name}, not {pid}")
    if index not in owner.status.processes:
        started = ", ".join(f"{owner.name}.{i}" for i in sorted(owner.status.processes, key=int)) or "none yet"
        raise usage.Refused(f"job {owner.name} has no process {index} (started: {started})")
    return owner, index


def _moving(target: job.MosixJob) -> list[str]:
    """The processes a move of the whole gang or commands file moves: each one running or frozen now."""
    live = (job.Phase.RUNNING, job.Phase.FROZEN)
    return sorted((i for i, p in target.status.processes.items() if p.phase in live), key=int)


def _process_moves(target: job.MosixJob, indexes: list[str], to: str, method: job.MigrationMethod) -> dict[str, Any]:
    """spec.processes entries asking each of `indexes` to move to `to`, each with its next serial."""
    out: dict[str, Any] = {}
    for index in indexes:
        current = target.spec.processes.get(index)
        serial = _serial(current.migration if current is not None else None)
        out[index] = {"migration": {"to": to, "serial": serial, "method": method.value}}
    return out


def apply(api: client.Client, target: job.MosixJob, req: Request, index: str | None = None) -> None:
    """Records the request on the job (or on its process `index`); the agents carry it out."""
    name = target.name if index is None else f"{target.name}.{index}"
    if target.status.phase.finished:
        raise usage.Refused(f"job {name} has finished ({target.status.phase.value})")
    if target.spec.queue is not None and target.status.phase == job.Phase.QUEUED and req.action != "freeze":
        raise usage.Refused(f"job {name} is waiting in the queue; use `mosq run {name}` to start it")
    if req.action in ("node", "home"):
        if target.spec.locked:
            raise usage.Refused(f"job {name} is locked (-L) to its node and will not migrate")
        if target.spec.batch == job.BatchMode.NATIVE:
            raise usage.Refused(f"job {name} is a native Linux batch job (-E) and cannot migrate")
        if not target.status.migratable:
            raise usage.Refused(f"job {name} cannot migrate: {target.status.unsupported_reason or 'unsupported'}")
        to = "home" if req.action == "home" else api.get_node(req.node or "").name
        if job.multi(target.spec):  # process by process: this one, or each running one
            moving = [index] if index is not None else _moving(target)
            if not moving:
                raise usage.Refused(f"job {name} has no running process to move")
            api.patch_job(target.name, {"processes": _process_moves(target, moving, to, req.method)})
            return
        api.patch_job(
            name, {"migration": {"to": to, "serial": _serial(target.spec.migration), "method": req.method.value}}
        )
    elif req.action in ("freeze", "continue") and index is not None:
        api.patch_job(target.name, {"processes": {index: {"frozen": req.action == "freeze"}}})
    elif req.action in ("freeze", "continue"):
        api.patch_job(name, {"frozen": req.action == "freeze"})
    elif index is not None:
        raise usage.Refused(f"{name}: a gang or commands file is checkpointed as a whole, each process into sets "
                            f"of its own: migrate {target.name} {req.action}")
    else:
        api.patch_job(
            name,
            {
                "checkpointRequest": {
                    "after": AFTER[req.action].value,
                    "serial": _serial(target.spec.checkpoint_request),
                }
            },
        )


def _main(argv: list[str]) -> int:
    req = parse(argv)
    if req.action == "help":
        print(USAGE)
        return 0
    api = req.common.connect()
    if req.pid is not None:
        target, index = resolve(api, req.pid)
        apply(api, target, req, index)
        return 0
    me = getpass.getuser()
    targets = [
        j
        for j in api.jobs()
        if j.spec.job_id == req.job_id and j.spec.user in (None, me) and not j.status.phase.finished
    ]
    if not targets:
        raise usage.Refused(f"no running processes of yours with job id {req.job_id}")
    for t in targets:
        apply(api, t, req)
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("migrate", USAGE, _main, argv)
