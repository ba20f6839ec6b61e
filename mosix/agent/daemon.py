"""The agent's control loop: carry out what the control plane wrote on the jobs placed here.

Level-triggered, like a kubelet: each round reads the jobs whose `status.node` is this node and
makes the containers match (start, restore, freeze, continue, checkpoint, signal, migrate, clean
up on deletion), then reports what it observed. A restarted agent resumes from the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from mosix.agent import (
    containers,
    errors,
    gangs,
    homeio,
    iostats,
    jobs,
    metrics,
    nodestatus,
    procfiles,
    selfcontrol,
    unsupported,
)
from mosix.agent.homefs import exports
from mosix.api import job, meta, node
from mosix.client import client, store

log = logging.getLogger("mosix.agent")

IO_PUBLISH_EVERY = 2.0  # seconds between a job's I/O rate updates in its status: the policy needs no more
SEND_TRIES = 20  # pushes of output home (a chunk per stream each) before a new set is listed
MINUTE = 60.0  # seconds in one of -A's minutes (a test shortens it)



class Migrate(Protocol):
    """Carries out a targetNode: of the job `key`, or (`index`) of that process of its gang or commands file."""

    def __call__(self, key: str, j: job.MosixJob, target: node.MosixNode, index: str | None = None) -> None: ...

SinkFor = Callable[[node.MosixNode], homeio.Sink]
InputFor = Callable[[node.MosixNode], homeio.InputSource]


def container_name(key: str) -> str:
    """The container's name for a job key ("ns/name" → "ns.name")."""
    return key.replace("/", ".")


def job_record(name: str, j: job.MosixJob, args: tuple[str, ...] | None = None,
               extra_env: dict[str, str] | None = None, home_url: str | None = None) -> jobs.Job:
    """The parts of a MosixJob the container needs (a gang member or -S line: its own args and env);
    home_url is the home agent's, which serves the job's working directory."""
    env = {**j.spec.env, "MOSIX_JOB": j.name, "MOSIX_JOB_ID": str(j.spec.job_id), **(extra_env or {})}
    if j.spec.working_dir:
        env["MOSIX_HOME_DIR"] = j.spec.working_dir
    return jobs.Job(name=name, args=tuple(j.spec.command) if args is None else args,
                    env=tuple(sorted(env.items())), cwd="/",
                    image=j.spec.image, memory_mb=j.spec.memory_mb, private_dirs=tuple(j.spec.private_dirs),
                    host_time=j.spec.host_time, stdin=j.spec.stdin,
                    workdir=j.spec.working_dir, home_url=home_url)


@dataclasses.dataclass
class Identity:
    """Who this agent is."""

    name: str
    number: int
    address: str
    port: int
    metrics_port: int
    user_port: int = 0  # the user API (output and input for Kubernetes users); 0: not served
    serving_ca: str = ""  # PEM of the CA users verify the user API with


class Agent:
    """One node's agent over a store (Kubernetes or the local cluster)."""

    def __init__(self, api: client.Client, manager: containers.Manager, me: Identity, sampler: nodestatus.Sampler,
                 migrate: Migrate | None = None, *, shared_checkpoints: bool = False,
                 home: homeio.HomeOutput | None = None, remote_sink: SinkFor | None = None,
                 remote_input: InputFor | None = None,
                 homefs: exports.Exports | None = None) -> None:
        self.api = api
        self.manager = manager
        self.me = me
        self.sampler = sampler
        self.migrate = migrate
        self.shared_checkpoints = shared_checkpoints  # every node reads this agent's checkpoint sets
        self._last_checkpoint: dict[str, float] = {}
        self.home = home or homeio.HomeOutput(manager.state_dir / "home")
        self.remote_sink = remote_sink
        self.forwarder = homeio.Forwarder()
        self.homefs = homefs  # serves the working directories of the jobs whose home this node is
        self._ran: dict[str, tuple[str, str]] = {}  # container name → (job key, home node): whose output to send
        self._cpu_base: dict[str, float] = {}  # job key → its CPU seconds here when its statistics were cleared
        self.iostats = iostats.Statistics()
        self._io_published: dict[str, float] = {}  # container name → when its I/O rate was last published
        self.gangs = gangs.Runner(self, container_name, job_record)  # -P and -S jobs' processes
        self.remote_input = remote_input
        manager.input_source = self.read_input
        self._begun: dict[str, str] = {}  # container name → the output stretches whose first push home was made
        self._adopt()

    # --- after a restart ---------------------------------------------------------------

    def _adopt(self) -> None:
        """The jobs the manager adopted after a restart of this agent: whose they are, and which stretches of
        their output were already begun at home (pushed on from where home is, not cut and sent again)."""
        for name in self.manager.names():
            owner = self.manager.owner(name)
            if not owner.get("key") or not owner.get("home"):
                continue
            self._ran[name] = (owner["key"], owner["home"])
            self._begun[name] = owner.get("begun", "")
            begun = set(self._begun[name].split(","))
            for stream in homeio.STREAMS:
                logical_start = self.manager.output_stretch(name, stream)[0]
                if f"{stream}:{logical_start}" in begun:
                    self.forwarder.sent.setdefault((name, stream, logical_start), logical_start)

    def _own(self, name: str, key: str, home: str) -> None:
        """Remember whose output a job run here is, here and in the job's dir (for a restarted agent)."""
        if self._ran.get(name) == (key, home):
            return
        self._ran[name] = (key, home)
        self._begun.pop(name, None)
        self._keep_owner(name)

    def _keep_owner(self, name: str) -> None:
        key, home = self._ran[name]
        begun = ",".join(sorted(f"{m[1]}:{m[2]}" for m in self.forwarder.sent if m[0] == name))
        if self._begun.get(name) == begun:
            return
        with contextlib.suppress(errors.AgentError, OSError):
            self.manager.set_owner(name, {"key": key, "home": home, "begun": begun})
            self._begun[name] = begun

    # --- the node -----------------------------------------------------------------------

    def register(self) -> node.MosixNode:
        """Creates this node's MosixNode, or keeps the administrator's policies on an existing one."""
        want: dict[str, Any] = {"number": self.me.number, "address": self.me.address, "agentPort": self.me.port}
        if self.me.metrics_port:
            want["metricsPort"] = self.me.metrics_port
        if self.me.user_port:
            want |= {"userPort": self.me.user_port, "servingCa": self.me.serving_ca}
        try:
            current = self.api.get_node(self.me.name)
        except store.NotFound:
            body = node.MosixNode(metadata=meta.ObjectMeta(name=self.me.name),
                                  spec=node.MosixNodeSpec.model_validate(want)).wire()
            self.api.store.create(node.MosixNode, body)
            return self.api.get_node(self.me.name)
        if current.name != self.me.name:
            raise errors.AgentError(f"node number {self.me.number} belongs to {current.name}")
        self.api.store.patch(node.MosixNode, self.me.name, {"spec": want})
        return self.api.get_node(self.me.name)

    def report(self) -> None:
        """Publishes the mosctl status fields."""
        me = self.api.get_node(self.me.name)
        pids, frozen, guests = [], 0, 0
        running: dict[str, tuple[int, int]] = {}  # job key → its pid and migrations
        for j in self.api.jobs():
            if j.status.phase.finished:
                continue
            if job.multi(j.spec):
                pids += self.gangs.running_pids(self.api.key(j), j)
                continue
            if j.status.node != self.me.name:
                continue
            name = container_name(self.api.key(j))
            try:
                st = self.manager.status(name)
            except errors.JobError:
                continue
            if st.state == jobs.State.RUNNING and st.pid:
                pids.append(st.pid)
                running[self.api.key(j)] = (st.pid, j.status.migrations)
                guests += (j.status.home_node or self.me.name) != self.me.name
            frozen += st.state == jobs.State.FROZEN
        before = self.sampler.last_sample
        status = self.sampler.sample(me.spec, nodestatus.JobsHere(pids=pids, frozen=frozen, guests=guests),
                                     queue_up=self._queue_up())
        self.api.store.patch(node.MosixNode, self.me.name, {"status": status.wire()}, status=True)
        metrics.node_status(self.me.name, status, self.sampler.last_sample - before if before else 0.0)
        for key, (pid, migrations) in running.items():
            namespace, _, name = key.rpartition("/")
            namespace, procs = namespace or self.api.store.namespace, nodestatus.descendants(pid)
            cpu, rss = metrics.job_usage(procs)
            metrics.job(namespace, name, max(0.0, cpu - self._cpu_base.get(key, 0.0)), rss,
                        io=metrics.job_io(namespace, name, procs), migrations=migrations)

    def clear_statistics(self, key: str) -> None:
        """Start the job's statistics afresh (/run/mosix/clear, MOSIX's `clear`): the one place per-job
        statistics are reset: its CPU seconds, counted from now on, and its I/O rate."""
        name = container_name(key)
        pid = self.manager.status(name).pid
        self._cpu_base[key] = metrics.job_usage(nodestatus.descendants(pid))[0] if pid else 0.0
        self.iostats.clear(name)

    def _queue_up(self) -> bool:
        return self.api.get_cluster().status.leader is not None

    # --- the jobs -----------------------------------------------------------------------

    def _sink(self, home: str) -> homeio.Sink:
        if home == self.me.name or self.remote_sink is None:
            return self.home.append
        return self.remote_sink(self.api.get_node(home))

    def read_input(self, name: str, offset: int) -> tuple[bytes, bool]:
        """The input of a mosrun -i job run here, from its home node; nothing while its home is unknown."""
        key, home = self._ran.get(name, ("", ""))
        if not key:
            return b"", False
        if home == self.me.name or self.remote_input is None:
            return self.home.read_input(key, offset)
        try:
            return self.remote_input(self.api.get_node(home))(key, offset)
        except (errors.AgentError, OSError, store.StoreError) as e:
            log.warning("input of %s not read from %s yet: %s", key, home, e)
            return b"", False

    def send_output(self, name: str) -> bool:
        """Sends the job's new output to its home node; True when home has all of it."""
        key, home = self._ran[name]
        try:
            return self.forwarder.push(self.manager, name, key, self._sink(home))
        except (errors.AgentError, OSError, store.StoreError) as e:
            log.warning("output of %s not sent to %s yet: %s", key, home, e)
            return False
        finally:
            self._keep_owner(name)

    def output_home(self, name: str) -> None:
        """Home gets the output a new set recorded before the set is listed: a restore from it after this
        node died continues the output from the set's offsets, and what came before them could never arrive."""
        for _ in range(SEND_TRIES):
            if name not in self._ran or self.send_output(name):
                return
        log.warning("%s: output not all home yet; its newest set is listed all the same", name)

    def _send_all(self, placed_here: set[str]) -> None:
        """Output of every job run here goes home; a job that left for another node is forgotten once
        home has all of the output it wrote here."""
        for name in list(self._ran):
            st = self._known(name)
            if st is None:
                del self._ran[name]
                continue
            done = self.send_output(name)
            if done and st.state == jobs.State.STOPPED and name not in placed_here:
                if not self.manager.remove_stopped(name):
                    continue  # it came back here meanwhile (a migration home): keep it
                self.forwarder.forget(name)
                self._begun.pop(name, None)
                self.iostats.forget(name)
                self._io_published.pop(name, None)
                self._last_checkpoint.pop(name, None)
                del self._ran[name]

    def reconcile(self) -> None:
        """One pass over the jobs placed here."""
        listed = self.api.jobs()
        self.home.set_finished(self.api.key(j) for j in listed  # their followers stop waiting for output
                               if j.status.phase.finished and j.status.home_node == self.me.name)
        placed_here = {container_name(self.api.key(j)) for j in listed if j.status.node == self.me.name}
        for j in listed:
            placed_here |= self.gangs.placed_here(self.api.key(j), j)
        self._send_all(placed_here)
        self._export_home_dirs()
        for j in self.api.jobs():  # read again: sending output may have taken a while
            if job.multi(j.spec):
                self.gangs.reconcile(self.api.key(j), j)
                continue
            if j.status.node != self.me.name or (j.status.phase.finished and not j.metadata.deletion_timestamp):
                continue
            key = self.api.key(j)
            try:
                self._one(key, j)
            except unsupported.Unsupported as e:
                self._unsupported(key, container_name(key), j, e.reason)
            except (errors.AgentError, OSError) as e:
                log.warning("job %s: %s", key, e)
                if j.status.phase == job.Phase.PENDING:  # it could not start here: say so, do not retry forever
                    self._patch(key, {"phase": job.Phase.FAILED.value, "where": "failed",
                                      "completionTime": meta.now_rfc3339(), "message": f"could not start: {e}"})
                else:
                    self._patch(key, {"message": str(e)})

    def _unsupported(self, key: str, name: str, j: job.MosixJob, reason: str) -> None:
        """CRIU cannot checkpoint the job: it never moves again; by its -e/-w/default, as MOSIX does: go on
        silently (-e), go on with a warning on its stderr (-w), or kill it (default)."""
        mode = j.spec.unsupported
        patch: dict[str, Any] = {"migratable": False, "unsupportedReason": reason, "targetNode": None,
                                 "phase": job.Phase.RUNNING.value, "where": self.me.name}
        if mode == job.Unsupported.ABORT:
            line = f"MOSRUN: {reason}: not supported under MOSIX (mosrun -e or -w continues without migration)"
            with contextlib.suppress(errors.AgentError):  # it may have ended meanwhile: the kill is what counts
                self.manager.warn(name, line + "\n")
            self.manager.kill(name)  # finished as Failed on the next pass, once home has its output
            patch["message"] = line
        else:
            if mode == job.Unsupported.WARN and j.status.unsupported_reason != reason:
                with contextlib.suppress(errors.AgentError):
                    self.manager.warn(name, f"MOSRUN: {reason}: continuing without migration\n")
            patch["message"] = f"not migratable: {reason}"
        log.warning("job %s cannot be checkpointed (%s): %s", key, reason, mode.value)
        self._patch(key, patch)
    def _export_home_dirs(self) -> None:
        """Serve the working directory of every live job whose home is here, and only those."""
        if self.homefs is None:
            return
        want = {container_name(self.api.key(j)): j.spec.working_dir for j in self.api.jobs()
                if j.status.home_node == self.me.name and j.spec.working_dir and not j.status.phase.finished}
        for name in self.homefs.jobs() - want.keys():
            self.homefs.unexport(name)
        for name, directory in want.items():
            if directory and name not in self.homefs.jobs():
                self.homefs.export(name, pathlib.Path(directory))

    def _home_url(self, home: str) -> str:
        n = self.api.get_node(home)
        return f"https://{n.spec.address}:{n.spec.agent_port}"

    def _patch(self, key: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(store.NotFound):  # deleted meanwhile: nothing left to report on
            self.api.patch_job_status(key, status)

    def _known(self, name: str) -> jobs.Status | None:
        try:
            return self.manager.status(name)
        except errors.JobError:
            return None

    def _one(self, key: str, j: job.MosixJob) -> None:
        name = container_name(key)
        st = j.status
        here = self._known(name)
        if j.metadata.deletion_timestamp:
            if here is not None:
                self.manager.remove(name)
            self._patch(key, {"conditions": [{"type": "Cleaned", "status": "True", "reason": "Deleted",
                                              "message": f"containers on {self.me.name} stopped and removed"}]})
            return
        if st.phase == job.Phase.PENDING:
            self._start(key, name, j, here)
            return
        if here is None:
            self._lost(key, j)
            return
        if here.state == jobs.State.EXITED:
            # A job migrated here may end before its source records it here, so before this agent ever saw
            # it running: its output goes home all the same.
            if name not in self._ran:
                self._own(name, key, j.status.home_node or self.me.name)
            if not self.send_output(name):
                return  # finished only once home has every line
            namespace, _, plain = key.rpartition("/")
            metrics.forget_job(namespace or self.api.store.namespace, plain)
            self._cpu_base.pop(key, None)
            code = here.exit_code if here.exit_code is not None else 1
            phase = job.Phase.SUCCEEDED if code == 0 else job.Phase.FAILED
            self._patch(key, {"phase": phase.value, "where": job.where(phase, self.me.name), "exitCode": code,
                              "completionTime": meta.now_rfc3339(), "targetNode": None})
            return
        if here.state == jobs.State.RUNNING:
            if name not in self._ran:
                self._own(name, key, j.status.home_node or self.me.name)
            if here.pid:
                self._measure_io(key, name, j, here.pid)
            self._running(key, name, j)
        elif here.state == jobs.State.FROZEN and st.frozen is None:
            self.manager.continue_(name)
            self._patch(key, {"phase": job.Phase.RUNNING.value, "where": self.me.name,
                              "origPid": self.manager.status(name).pid})

    def _measure_io(self, key: str, name: str, j: job.MosixJob, pid: int) -> None:
        """Samples the job's I/O (and, away from home, what crossed the link: its forwarded output and its
        FUSE process's traffic) and publishes its rates every `IO_PUBLISH_EVERY` seconds when they changed."""
        away = (j.status.home_node or self.me.name) != self.me.name
        forwarded = self.forwarder.forwarded.pop(name, 0)
        link = self.manager.home_link_pid(name) if away else None
        rates = self.iostats.sample(name, nodestatus.descendants(pid), j.spec.io_decay, forwarded if away else 0,
                                    link_pids=() if link is None else (link,))
        if rates is None or time.monotonic() - self._io_published.get(name, 0.0) < IO_PUBLISH_EVERY:
            return  # on a first sample here, the rate published where the job ran before stands
        self._io_published[name] = time.monotonic()
        now = (round(rates.io_kbps, 1), round(rates.remote_kbps, 1))
        if now != (j.status.io_rate_kbps, j.status.remote_io_kbps):
            self._patch(key, {"ioRateKbps": now[0], "remoteIoKbps": now[1]})

    def _start(self, key: str, name: str, j: job.MosixJob, here: jobs.Status | None) -> None:
        if here is not None and here.state == jobs.State.RUNNING:
            self._patch(key, {"phase": job.Phase.RUNNING.value, "where": self.me.name, "origPid": here.pid})
            return
        if here is not None:
            self.manager.remove(name)
        base = pathlib.Path(j.spec.checkpoint.base) if j.spec.checkpoint and j.spec.checkpoint.base else None
        max_sets = j.spec.checkpoint.max_sets if j.spec.checkpoint and j.spec.checkpoint.max_sets else 10
        source = j.status.restore_from or (j.spec.recover.from_checkpoint if j.spec.recover else None)
        if source:
            remap = {r.fd: r.path for r in j.spec.recover.fd_remap} if j.spec.recover else None
            started = self.manager.restore(name, pathlib.Path(source), remap)
        else:
            record = job_record(name, j, home_url=self._home_url(j.status.home_node or self.me.name))
            started = self.manager.run(record, checkpoint_base=base, max_sets=max_sets)
        self._last_checkpoint[name] = time.monotonic()
        with contextlib.suppress(OSError):  # the next pass publishes again
            self.manager.procdir(name).publish(self._view(j))
        self._ran.pop(name, None)
        self._own(name, key, j.status.home_node or self.me.name)
        self._patch(key, {"phase": job.Phase.RUNNING.value, "where": self.me.name, "origPid": started.pid,
                          "startTime": j.status.start_time or meta.now_rfc3339(), "restoreFrom": None,
                          "homeNode": j.status.home_node or self.me.name, "message": None})

    def _lost(self, key: str, j: job.MosixJob) -> None:
        """A job placed here that this agent does not hold (the agent restarted): resume, or say why not."""
        newest = j.status.checkpoints[-1].name if j.status.checkpoints else None
        if newest and pathlib.Path(newest).exists():
            self._patch(key, {"phase": job.Phase.PENDING.value, "restoreFrom": newest,
                              "message": f"agent on {self.me.name} restarted; restoring {newest}"})
        else:
            self._patch(key, {"phase": job.Phase.FAILED.value, "where": "failed", "completionTime": meta.now_rfc3339(),
                              "message": f"lost when the agent on {self.me.name} restarted, with no checkpoint"})

    def _view(self, j: job.MosixJob, out: selfcontrol.Outcome | None = None) -> procfiles.View:
        """What the job reads in /run/mosix: the job as stored, with the writes just carried out."""
        locked = out.locked if out is not None and out.locked is not None else j.spec.locked
        needmem = out.needmem if out is not None and out.needmem is not None else j.spec.memory_mb or 0
        return procfiles.View(whereami=self.me.name, nmigs=j.status.migrations, locked=locked, needmem=needmem)

    def _self_control(self, key: str, name: str, j: job.MosixJob) -> None:
        """Carry out what the job wrote to its /run/mosix files, then show it the present values. Whatever the
        job did to the directory, the rest of the pass (freeze, signals, migration) goes on."""
        files = self.manager.procdir(name)
        if not files.path.is_dir():  # a container started before the agent had /run/mosix
            return
        try:
            self._carry_out(key, j, files)
        except OSError as e:
            log.warning("job %s: %s: %s", key, procfiles.MOUNT_POINT, e)

    def _carry_out(self, key: str, j: job.MosixJob, files: procfiles.ProcDir) -> None:
        out = selfcontrol.outcome(self.api, j, files.take())
        if out.spec:
            try:
                self.api.patch_job(key, out.spec)
            except store.StoreError as e:
                out.refused.append(f"{procfiles.MOUNT_POINT}: {e}")
                out.spec = {}
        if out.clear:
            self.clear_statistics(key)
        if out.refused:
            log.warning("job %s: %s", key, "; ".join(out.refused))
            self._patch(key, {"message": "; ".join(out.refused)})
        files.publish(self._view(j, out))

    def _running(self, key: str, name: str, j: job.MosixJob) -> None:
        self._self_control(key, name, j)
        spec, st = j.spec, j.status
        if not st.migratable:  # CRIU cannot checkpoint it: refuse every dump instead of trying again
            self._refuse_dumps(key, j)
        elif st.frozen is not None:
            self.manager.freeze(name, st.frozen.value)
            self._patch(key, {"phase": job.Phase.FROZEN.value})
            return
        if spec.signal is not None and spec.signal.serial > st.observed_signal_serial:
            self.manager.runtime.kill(name, spec.signal.signal, all_processes=True)
            self._patch(key, {"observedSignalSerial": spec.signal.serial})
        if not st.migratable:
            return
        request = spec.checkpoint_request
        if request is not None and request.serial > st.observed_checkpoint_serial:
            self._checkpoint(key, name, j, request.after)
            self._patch(key, {"observedCheckpointSerial": request.serial})
            return
        every = spec.checkpoint.interval_minutes if spec.checkpoint else None
        # -A counts from the job's last checkpoint here, or from when this agent first saw it run: started
        # here, arrived by migration, or adopted after a restart of this agent.
        last = self._last_checkpoint.setdefault(name, time.monotonic())
        if every and time.monotonic() - last >= every * MINUTE:
            self._checkpoint(key, name, j, job.AfterCheckpoint.CONTINUE)
        if st.target_node and st.target_node != self.me.name and self.migrate is not None:
            target = self.api.get_node(st.target_node)
            self.migrate(key, j, target)

    def _refuse_dumps(self, key: str, j: job.MosixJob) -> None:
        """Drop requests to freeze, move or checkpoint a job CRIU cannot checkpoint, saying why."""
        st, request = j.status, j.spec.checkpoint_request
        patch: dict[str, Any] = {}
        if st.frozen is not None or st.target_node:
            patch |= {"frozen": None, "targetNode": None}
        if request is not None and request.serial > st.observed_checkpoint_serial:
            patch["observedCheckpointSerial"] = request.serial
        if patch:
            self._patch(key, patch | {"message": f"not migratable: {st.unsupported_reason or 'unsupported'}"})

    def _checkpoint(self, key: str, name: str, j: job.MosixJob, after: job.AfterCheckpoint) -> None:
        keep = after == job.AfterCheckpoint.CONTINUE
        started = time.monotonic()
        path = self.manager.checkpoint(name, keep_running=keep, reason=after.value.lower())
        metrics.CHECKPOINT.observe(time.monotonic() - started)
        self.output_home(name)
        self._last_checkpoint[name] = time.monotonic()
        sets = [c.wire() for c in j.status.checkpoints if c.name != str(path)]
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        namespace, _, plain = key.rpartition("/")
        metrics.CHECKPOINT_BYTES.labels(namespace or self.api.store.namespace, plain).set(size)
        sets.append({"name": str(path), "time": meta.now_rfc3339(), "sizeBytes": size}
                    | ({} if self.shared_checkpoints else {"node": self.me.name}))
        patch: dict[str, Any] = {"checkpoints": sets[-50:]}
        if after != job.AfterCheckpoint.CONTINUE:  # it no longer runs: its usage series go, its set's size stays
            metrics.job_left(namespace or self.api.store.namespace, plain)
        if after == job.AfterCheckpoint.STOP:
            patch |= {"phase": job.Phase.STOPPED.value}
        elif after == job.AfterCheckpoint.EXIT:
            self.manager.remove(name)
            patch |= {"phase": job.Phase.SUCCEEDED.value, "where": "done", "completionTime": meta.now_rfc3339(),
                      "message": f"checkpointed to {path} and exited"}
        self._patch(key, patch)


def serve(agent: Agent, stop: threading.Event, interval: float = 0.5, report_every: float = 2.0) -> None:
    """Reconciles every `interval` and reports the node every `report_every` seconds, until stopped."""
    agent.register()
    last_report = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() - last_report >= report_every:
                agent.report()
                last_report = time.monotonic()
            agent.reconcile()
        except store.StoreError as e:  # the store is away for a moment: try again next round
            log.warning("store: %s", e)
        except Exception:
            log.exception("agent round failed")
        stop.wait(interval)
