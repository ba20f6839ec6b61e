"""migrate: move, bring home, freeze, continue or checkpoint a process, or every process of a job id."""

from __future__ import annotations

import dataclasses
import getpass
import re

from mosix.api import job
from mosix.cli import common, usage
from mosix.client import client

USAGE = (
    """usage: migrate {pid} {node-number|ip-address|host-name}   move the process to that node
       migrate {pid} home|freeze|continue|checkpoint|checkstop|exit
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


def apply(api: client.Client, target: job.MosixJob, req: Request) -> None:
    """Records the request on the job; its node's agent carries it out."""
    name = target.name
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
        api.patch_job(
            name, {"migration": {"to": to, "serial": _serial(target.spec.migration), "method": req.method.value}}
        )
    elif req.action in ("freeze", "continue"):
        api.patch_job(name, {"frozen": req.action == "freeze"})
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
        targets = [api.get_job(req.pid)]
    else:
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
