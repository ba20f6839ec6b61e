"""The processes of gangs (-P n) and commands files (-S) that the control plane put on this node.

Each entry of a job's `status.processes` whose `node` is this node is one container, named
`<job container>_<index>` ('_' cannot appear in a Kubernetes name, so it never clashes with a
job's own), whose output goes home under the same name. The agent starts it (restoring it from
its `restoreFrom` after its node died), freezes and continues it with the job (`status.frozen`)
or alone (its own `frozen`), checkpoints it (on request, and every -A minutes, into sets of its
own: `<base>_<index>.N`), migrates it to its `targetNode` with the agent's migrator (the one that
moves single jobs), delivers moskillall signals, and reports its end; the control plane sums the
processes up into the job's status. Each patch touches only this node's entries of the map, so
agents never overwrite one another.
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mosix.agent import errors, jobs
from mosix.api import job, meta
from mosix.client import store

if TYPE_CHECKING:
    from mosix.agent import daemon

log = logging.getLogger("mosix.agent")

MAX_SETS_LISTED = 50  # a process's checkpoint sets kept in its status, newest last (as a job's)


def container(job_container: str, index: str) -> str:
    """The container (and home output) name of process `index` of the job named `job_container`."""
    return f"{job_container}_{index}"


def mine(j: job.MosixJob, me: str) -> dict[str, job.ProcessStatus]:
    """The job's processes placed on node `me`, by index."""
    return {i: p for i, p in j.status.processes.items() if p.node == me}


ContainerName = Callable[[str], str]
Record = Callable[..., jobs.Job]


class Runner:
    """Carries out the process entries of one node, on behalf of its agent (whose naming and job
    records it is given, so the two stay one)."""

    def __init__(self, agent: daemon.Agent, container_name: ContainerName, record: Record) -> None:
        self.agent = agent
        self.container_of = container_name
        self.record = record
        self._last_checkpoint: dict[str, float] = {}  # container name → when it was last checkpointed here

    def _patch(self, key: str, index: str, fields: dict[str, Any]) -> None:
        self.agent._patch(key, {"processes": {index: fields}})

    def placed_here(self, key: str, j: job.MosixJob) -> set[str]:
        """Container names of the job's processes on this node."""
        base = self.container_of(key)
        return {container(base, i) for i in mine(j, self.agent.me.name)}

    def running_pids(self, key: str, j: job.MosixJob) -> list[int]:
        """Host pids of the job's processes running on this node (for the node's load and metrics)."""
        pids = []
        for name in self.placed_here(key, j):
            st = self.agent._known(name)
            if st is not None and st.state == jobs.State.RUNNING and st.pid:
                pids.append(st.pid)
        return pids

    def reconcile(self, key: str, j: job.MosixJob) -> None:
        """One pass over the job's processes on this node; a process that fails to start fails alone."""
        base = self.container_of(key)
        for index, proc in sorted(mine(j, self.agent.me.name).items(), key=lambda ip: int(ip[0])):
            name = container(base, index)
            try:
                self._one(key, j, index, proc, name)
            except (errors.AgentError, OSError, ValueError) as e:
                log.warning("job %s process %s: %s", key, index, e)
                if proc.phase == job.Phase.PENDING:
                    self._patch(key, index, {"phase": job.Phase.FAILED.value, "exitCode": 127,
                                             "completionTime": meta.now_rfc3339(), "message": f"could not start: {e}"})
                else:
                    self._patch(key, index, {"message": str(e)})

    def _one(self, key: str, j: job.MosixJob, index: str, proc: job.ProcessStatus, name: str) -> None:
        agent = self.agent
        here = agent._known(name)
        if j.metadata.deletion_timestamp:
            if here is not None:
                agent.manager.remove(name)
            if not proc.phase.finished and proc.phase != job.Phase.STOPPED:  # what the finalizer waits for
                self._patch(key, index, {"phase": job.Phase.STOPPED.value,
                                         "message": f"deleted: stopped and removed on {agent.me.name}"})
            return
        if j.status.phase.finished:
            if here is not None and here.state != jobs.State.EXITED:
                agent.manager.remove(name)  # the job failed as a whole: stop what is left of it
            return
        if proc.phase.finished:
            return
        if proc.phase == job.Phase.PENDING:
            self._start(key, j, index, name, here)
            return
        if here is None:  # this agent restarted and does not hold it: on from its newest checkpoint, if any
            newest = proc.checkpoints[-1].name if proc.checkpoints else None
            if newest and pathlib.Path(newest).exists():
                self._patch(key, index, {"phase": job.Phase.PENDING.value, "restoreFrom": newest,
                                         "message": f"agent on {agent.me.name} restarted; restoring {newest}"})
                return
            self._patch(key, index, {"phase": job.Phase.FAILED.value, "exitCode": 1,
                                     "completionTime": meta.now_rfc3339(),
                                     "message": f"lost when the agent on {agent.me.name} restarted"})
            return
        if here.state == jobs.State.EXITED:
            # One that migrated here may end before its source recorded it here: its output goes home all the same.
            agent._ran.setdefault(name, (f"{key}_{index}", j.status.home_node or agent.me.name))
            if not agent.send_output(name):
                return  # finished only once home has every line
            code = here.exit_code if here.exit_code is not None else 1
            phase = job.Phase.SUCCEEDED if code == 0 else job.Phase.FAILED
            self._patch(key, index, {"phase": phase.value, "exitCode": code, "completionTime": meta.now_rfc3339()})
            return
        frozen = proc.frozen or j.status.frozen
        if here.state == jobs.State.RUNNING:
            agent._ran.setdefault(name, (f"{key}_{index}", j.status.home_node or agent.me.name))
            if frozen is not None:
                agent.manager.freeze(name, frozen.value)
                self._patch(key, index, {"phase": job.Phase.FROZEN.value})  # proc.frozen: the control plane's
                return
            signal = j.spec.signal
            if signal is not None and signal.serial > proc.observed_signal_serial:
                agent.manager.runtime.kill(name, signal.signal, all_processes=True)
                self._patch(key, index, {"observedSignalSerial": signal.serial})
            request = j.spec.checkpoint_request
            if request is not None and request.serial > proc.observed_checkpoint_serial:
                self._checkpoint(key, index, name, proc, after=request.after, serial=request.serial)
                return
            every = j.spec.checkpoint.interval_minutes if j.spec.checkpoint else None
            last = self._last_checkpoint.setdefault(name, time.monotonic())
            if every and time.monotonic() - last >= every * 60:
                self._checkpoint(key, index, name, proc, after=job.AfterCheckpoint.CONTINUE, serial=None)
            if proc.target_node and proc.target_node != agent.me.name and agent.migrate is not None:
                try:
                    target = agent.api.get_node(proc.target_node)
                except store.NotFound as e:  # a request naming no node: say so once, not on every pass
                    self._patch(key, index, {"targetNode": None, "message": f"not migrated: {e}"})
                    return
                agent.migrate(key, j, target, index)
        elif here.state == jobs.State.FROZEN and frozen is None:
            agent.manager.continue_(name)
            self._patch(key, index, {"phase": job.Phase.RUNNING.value, "origPid": agent.manager.status(name).pid})

    def _start(self, key: str, j: job.MosixJob, index: str, name: str, here: jobs.Status | None) -> None:
        agent = self.agent
        home = j.status.home_node or agent.me.name
        if here is not None and here.state == jobs.State.RUNNING:  # started before a restart of this agent
            agent._ran.setdefault(name, (f"{key}_{index}", home))
            self._patch(key, index, {"phase": job.Phase.RUNNING.value, "origPid": here.pid})
            return
        if here is not None:
            agent.manager.remove(name)
        proc = j.status.processes[index]
        if proc.restore_from:  # its node died: on from its newest checkpoint
            started = agent.manager.restore(name, pathlib.Path(proc.restore_from))
        else:
            args = tuple(job.process_args(j.spec, int(index)))
            policy = j.spec.checkpoint
            base = pathlib.Path(f"{policy.base}_{index}") if policy and policy.base else None
            started = agent.manager.run(self.record(name, j, args=args, extra_env={"MOSIX_PROCESS": index}),
                                        checkpoint_base=base, max_sets=policy.max_sets if policy else None)
        self._last_checkpoint[name] = time.monotonic()
        agent._ran[name] = (f"{key}_{index}", home)
        self._patch(key, index, {"phase": job.Phase.RUNNING.value, "origPid": started.pid,
                                 "startTime": proc.start_time or meta.now_rfc3339(), "restoreFrom": None,
                                 "message": None})

    def _checkpoint(self, key: str, index: str, name: str, proc: job.ProcessStatus, *, after: job.AfterCheckpoint,
                    serial: int | None) -> None:
        """A set of this process's own (migrate checkpoint/checkstop/exit with `serial`, or -A), then go on,
        stop or end; the sets are listed on the process, newest last, for its recovery."""
        path = self.agent.manager.checkpoint(name, keep_running=after == job.AfterCheckpoint.CONTINUE,
                                             reason=after.value.lower() if serial is not None else "periodic")
        self.agent.output_home(name)
        self._last_checkpoint[name] = time.monotonic()
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        made = {"name": str(path), "time": meta.now_rfc3339(), "sizeBytes": size}
        if not self.agent.shared_checkpoints:
            made["node"] = self.agent.me.name
        sets = [c.wire() for c in proc.checkpoints if c.name != str(path)] + [made]
        fields: dict[str, Any] = {"checkpoint": str(path), "checkpoints": sets[-MAX_SETS_LISTED:]}
        if serial is not None:
            fields["observedCheckpointSerial"] = serial
        if after == job.AfterCheckpoint.STOP:
            fields["phase"] = job.Phase.STOPPED.value
        elif after == job.AfterCheckpoint.EXIT:
            fields |= {"phase": job.Phase.SUCCEEDED.value, "exitCode": 0, "completionTime": meta.now_rfc3339(),
                       "message": f"checkpointed to {path} and exited"}
        self._patch(key, index, fields)
