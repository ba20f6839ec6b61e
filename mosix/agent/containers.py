"""Job container lifecycle on one agent: run, checkpoint, freeze, continue, restore, kill.

Layout under the agent's state directory:
    runc/                      runc --root (this agent's containers only)
    jobs/<name>/               job.json, bundle/config.json, upper/ work/ rootfs/ (the overlay),
                               stdout, stderr (appended, kept apart), exit_code,
                               mosix/ (the job's /run/mosix, see procfiles),
                               run.json (the running container's pid), stdin.offset (input fed so far),
                               owner.json (whose job it is, for the daemon)
    frozen/<name>/             the freeze set of a frozen job (a checkpoint set)
    checkpoints/<name>/ckpt.N  checkpoint sets, unless the caller names another base
Everything but the job's writable layer and output is root-only.

A dump always pauses the container first (cgroup freezer), drains its stdout/stderr pipes and
copies its writable layer, then checkpoints: the set's memory, files and output offsets all
describe the same instant, which is what lets a restore continue the output with no line lost
or repeated.

The agent may die at any instant (kill -9) and its keeper starts it again (`mosix.agent.keeper`):
the keeper holds a dup of every job's pipe ends and reaps the containers the dead agent left, and
`adopt` takes back from the state dir, runc and the keeper what this agent had: running jobs go on
untouched (pumps and feeder on the same pipes), jobs that ended meanwhile get their exit codes.
"""

from __future__ import annotations

import collections.abc
import contextlib
import ctypes
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import select
import shutil
import threading
import time

from mosix.agent import (
    checkpoints,
    criu,
    errors,
    fdstore,
    images,
    jobs,
    output,
    overlay,
    procfiles,
    runc,
    spec,
    stdin,
    unsupported,
)
from mosix.agent.homefs import mounts

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
STDIN_OFFSET = "stdin.offset"
RECORD_WAIT = 10.0  # seconds an adopted container's exit may take to be recorded by the keeper, once it is gone

InputSource = collections.abc.Callable[[str, int], tuple[bytes, bool]]  # (job, offset) -> (input, ended)


def become_subreaper() -> None:
    """Adopt orphaned descendants: detached containers then stay our children, so we get exit codes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclasses.dataclass
class _Entry:
    job: jobs.Job
    dir: pathlib.Path
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    state: jobs.State = jobs.State.STOPPED
    pid: int | None = None
    exit_code: int | None = None
    freeze_reason: str | None = None
    image_digest: str = ""
    generation: int = 0
    pumps: list[output.Pump] = dataclasses.field(default_factory=list)
    feeder: stdin.Feeder | None = None  # mosrun -i
    stdin_start: int = 0  # input offset the next start feeds from (a restore: what the process had consumed)
    exited: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass(frozen=True)
class Held:
    """A paused job's stdio as its dump records it: logical output offsets and the input it consumed."""

    stdout_offset: int
    stderr_offset: int
    stdin_offset: int


class Manager:
    """All job containers of one agent."""

    def __init__(self, state_dir: pathlib.Path, cache: images.Cache, node: str = "local",
                 runtime: runc.Runtime | None = None, homefs: mounts.Mounter | None = None, *,
                 keeper: fdstore.FdStore | None = None) -> None:
        self.state_dir = checkpoints.secure_dir(state_dir)
        self.homefs = homefs or mounts.Mounter()
        self.cache = cache
        self.node = node
        self.runtime = runtime or runc.Runtime(self.state_dir / "runc")
        self._entries: dict[str, _Entry] = {}
        self.input_source: InputSource | None = None  # where jobs with stdin read their input (the daemon sets it)
        self.keeper = keeper  # holds the jobs' pipes across a restart of this agent (None: no keeper)
        self._lock = threading.Lock()
        become_subreaper()

    # --- queries -------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Jobs this agent knows."""
        with self._lock:
            return sorted(self._entries)

    def status(self, name: str) -> jobs.Status:
        """The job's state on this agent."""
        e = self._get(name)
        with e.lock:
            base = self._base(e)
            return jobs.Status(name=name, state=e.state, pid=e.pid if e.state == jobs.State.RUNNING else None,
                               exit_code=e.exit_code, freeze_reason=e.freeze_reason,
                               checkpoints=[str(p) for p in checkpoints.sets_of(base)])

    def stdout_path(self, name: str) -> pathlib.Path:
        """The file the job's stdout is appended to."""
        return self._job_dir(name) / "stdout"

    def stderr_path(self, name: str) -> pathlib.Path:
        """The file the job's stderr is appended to."""
        return self._job_dir(name) / "stderr"

    def procdir(self, name: str) -> procfiles.ProcDir:
        """The job's /run/mosix/ directory on this agent (bind-mounted into its container)."""
        return procfiles.ProcDir(self._job_dir(name) / "mosix")

    def wait(self, name: str, timeout: float | None = None) -> int | None:
        """Wait for the running job to exit by itself; its exit code (None on timeout)."""
        e = self._get(name)
        if not e.exited.wait(timeout):
            return None
        with e.lock:
            return e.exit_code

    # --- run -----------------------------------------------------------------------------

    def run(self, job: jobs.Job, checkpoint_base: pathlib.Path | None = None,
            max_sets: int | None = None) -> jobs.Status:
        """Start a job in a new container with a fresh writable layer.

        checkpoint_base and max_sets, if given, replace the job's own (mosrun -C, -N).
        """
        if checkpoint_base is not None:
            job = dataclasses.replace(job, checkpoint_base=str(checkpoint_base))
        if max_sets is not None:
            job = dataclasses.replace(job, max_sets=max_sets)
        with self._lock:
            old = self._entries.get(job.name)
            if old is not None and old.state in (jobs.State.RUNNING, jobs.State.FROZEN):
                raise errors.JobError(f"job {job.name} is already {old.state.value.lower()} here")
            e = _Entry(job=job, dir=self._job_dir(job.name))
            self._entries[job.name] = e
        with e.lock:
            image = self.cache.resolve(job.image)
            e.image_digest = image.identity
            self._teardown_layer(e)
            for p in ("stdout", "stderr", "exit_code", "stream.json", "run.json", STDIN_OFFSET):
                (e.dir / p).unlink(missing_ok=True)
            self._prepare(e, image.rootfs, upper_from=None)
            e.stdin_start = 0
            own_clock = not job.host_time  # -t: the hosting node's clocks; else its own, kept across moves
            self._start(e, lambda stdio: self.runtime.run(job.name, e.dir / "bundle", stdio, own_clock))
        return self.status(job.name)

    # --- checkpoint, freeze, continue, restore -----------------------------------------------

    def checkpoint(self, name: str, keep_running: bool, base: pathlib.Path | None = None,
                   max_sets: int | None = None, reason: str | None = None) -> pathlib.Path:
        """Write the next set `base.N`; keep_running False is checkstop/exit.

        base and max_sets default to the job's own (mosrun -C base -N max).
        """
        e = self._get(name)
        with e.lock:
            self._require(e, jobs.State.RUNNING)
            base = base or self._base(e)
            checkpoints.secure_dir(base.parent)
            final, serial = checkpoints.next_set(base, max_sets or e.job.max_sets)
            why = reason or ("checkpoint" if keep_running else "checkstop")
            self._dump(e, final, serial, keep_running, why)
            if not keep_running:
                e.state = jobs.State.STOPPED
            return final

    def stop_into(self, name: str, final: pathlib.Path, reason: str) -> pathlib.Path:
        """Dump the job into the set `final` and end its process (migration's first step; the
        job's own checkpoint sets are untouched). A restore from it is the rollback."""
        e = self._get(name)
        with e.lock:
            self._require(e, jobs.State.RUNNING)
            checkpoints.secure_dir(final.parent)
            self._dump(e, final, 1, False, reason)
            e.state = jobs.State.STOPPED
            return final

    def freeze(self, name: str, reason: str = "Manual") -> pathlib.Path:
        """Dump the job to disk and end its process (migrate freeze); reason: Manual, Expelled or Auto."""
        e = self._get(name)
        with e.lock:
            self._require(e, jobs.State.RUNNING)
            final = checkpoints.secure_dir(self.state_dir / "frozen") / name
            self._dump(e, final, 1, False, f"freeze:{reason}")
            e.state = jobs.State.FROZEN
            e.freeze_reason = reason
            return final

    def continue_(self, name: str) -> jobs.Status:
        """Bring a frozen job back from its freeze set (migrate continue)."""
        e = self._get(name)
        with e.lock:
            self._require(e, jobs.State.FROZEN)
            frozen = self.state_dir / "frozen" / name
            self.restore(name, frozen)
            shutil.rmtree(frozen)
            return self.status(name)

    def restore(self, name: str, set_dir: pathlib.Path, fd_remap: dict[int, str] | None = None,
                take_layer: bool = False) -> jobs.Status:
        """Continue a job from a set on this agent (mosrun -R set -O fd=path).

        Output offsets are logical (bytes the job has written since it started, wherever it ran).
        If this agent's file holds output past the set's offset in the same stretch of the job's
        life (it kept running after the checkpoint), that tail is cut: the restored process writes
        those lines again. Otherwise the restored output is appended as a new stretch.
        take_layer: move the set's writable layer instead of copying it (a received set, used once).
        """
        with self.restoring(name, set_dir, take_layer) as e:
            images_dir = set_dir / checkpoints.IMAGES
            staging: pathlib.Path | None = None
            if fd_remap:
                staging = self._scratch(f"remap-{name}")
                shutil.rmtree(staging)
                criu.remap(images_dir, staging, fd_remap)
                images_dir = staging
            work = self._scratch(f"restore-{name}")
            try:
                self._start(e, lambda stdio: self.runtime.restore(name, e.dir / "bundle", images_dir, work, stdio))
            finally:
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        return self.status(name)

    @contextlib.contextmanager
    def restoring(self, name: str, set_dir: pathlib.Path, take_layer: bool = False) -> collections.abc.Iterator[_Entry]:
        """What every restore does before starting the process, the job's lock held: its entry, the image
        checked against the set's, the writable layer from the set, the output cut back to the set's offsets.
        The caller starts the process inside; on leaving, the job is no longer frozen."""
        meta = checkpoints.read_meta(set_dir)
        job = dataclasses.replace(jobs.Job.from_dict(meta.job), name=name)
        with self._lock:
            e = self._entries.get(name)
            if e is None:
                e = _Entry(job=job, dir=self._job_dir(name))
                self._entries[name] = e
        with e.lock:
            with self._lock:  # forgotten (remove_stopped) while this waited for the lock: known again
                self._entries[name] = e
            if e.state == jobs.State.RUNNING:
                raise errors.JobError(f"job {name} is running here: kill it before restoring")
            e.job = job
            image = self.cache.resolve(job.image)
            if meta.image_digest and image.identity != meta.image_digest:
                raise errors.CheckpointError(
                    f"{set_dir} was taken on image {meta.image_digest}, {job.image} is now {image.identity}")
            e.image_digest = image.identity
            self._teardown_layer(e)
            self._prepare(e, image.rootfs, upper_from=set_dir / checkpoints.UPPER, move=take_layer)
            # A set of another job (mosrun -R after checkstop or exit) starts a new job: its output, like any
            # new job's, from 0 at its home; the same job (migrated, restored after its node died) goes on.
            recovered = meta.job.get("name") != name
            self._cut_output(e, {"stdout": 0, "stderr": 0} if recovered else
                             {"stdout": meta.stdout_offset, "stderr": meta.stderr_offset})
            (e.dir / "exit_code").unlink(missing_ok=True)
            if job.host_time:  # -t: CRIU restores the dumped clocks in a new time namespace unless this is gone
                for clocks in (set_dir / checkpoints.IMAGES).glob("timens-*.img"):
                    clocks.unlink()
            e.stdin_start = meta.stdin_offset
            yield e
            e.freeze_reason = None

    def warn(self, name: str, text: str) -> None:
        """Add a line to the running job's stderr, after what it wrote so far (mosrun -w's warnings)."""
        e = self._get(name)
        with e.lock:
            self._require(e, jobs.State.RUNNING)
            e.pumps[1].inject(text.encode())

    # --- ending ----------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """Kill the job's container (if running) and wait until its output is in."""
        e = self._get(name)
        with e.lock:
            running = e.state == jobs.State.RUNNING
            if running:
                with contextlib.suppress(runc.Refused):
                    self.runtime.kill(name, "KILL", all_processes=True)
        if running:
            e.exited.wait(30)
        with e.lock:
            self._finish_container(e)

    def remove(self, name: str) -> None:
        """Forget the job: kill it, unmount and delete its layer, output and freeze set."""
        e = self._get(name)
        self.kill(name)
        with e.lock:
            self._teardown_layer(e)
            shutil.rmtree(e.dir, ignore_errors=True)
            shutil.rmtree(self.state_dir / "frozen" / name, ignore_errors=True)
        with self._lock:
            self._entries.pop(name, None)

    def remove_stopped(self, name: str) -> bool:
        """Forget the job if it is still stopped here (it left for another node); False if it came back
        meanwhile. Checked and done under the job's lock, so a restore that brings it back is never undone."""
        with self._lock:
            e = self._entries.get(name)
        if e is None:
            return False
        with e.lock:
            if e.state != jobs.State.STOPPED:
                return False
            self._finish_container(e)
            self._teardown_layer(e)
            shutil.rmtree(e.dir, ignore_errors=True)
            shutil.rmtree(self.state_dir / "frozen" / name, ignore_errors=True)
            with self._lock:
                if self._entries.get(name) is e:
                    del self._entries[name]
        return True

    def close(self) -> None:
        """Kill every running container of this agent and unmount every layer (shutdown, tests)."""
        for name in self.names():
            e = self._get(name)
            self.kill(name)
            with e.lock:
                self._teardown_layer(e)
        # runc removes each job's cgroup, not the agent's parent /mosix/<node>: drop it once empty.
        parent = spec.cgroup_path(self.node, "x").rsplit("/", 1)[0].lstrip("/")
        for hierarchy in pathlib.Path("/sys/fs/cgroup").glob("*"):
            with contextlib.suppress(OSError):
                (hierarchy / parent).rmdir()

    # --- internals -------------------------------------------------------------------------

    def _get(self, name: str) -> _Entry:
        with self._lock:
            e = self._entries.get(name)
        if e is None:
            raise errors.JobError(f"no job {name!r} on this agent")
        return e

    def _require(self, e: _Entry, state: jobs.State) -> None:
        if e.state != state:
            raise errors.JobError(f"job {e.job.name} is {e.state.value.lower()}, not {state.value.lower()}")

    def home_link_pid(self, name: str) -> int | None:
        """The FUSE process carrying the job's working directory from its home, when it runs away."""
        return self.homefs.server_pid(self._job_dir(name))

    def _job_dir(self, name: str) -> pathlib.Path:
        return self.state_dir / "jobs" / name

    def _base(self, e: _Entry) -> pathlib.Path:
        if e.job.checkpoint_base:
            return pathlib.Path(e.job.checkpoint_base)
        return self.state_dir / "checkpoints" / e.job.name / "ckpt"

    def _scratch(self, prefix: str) -> pathlib.Path:
        tmp = checkpoints.secure_dir(self.state_dir / "tmp")
        path = tmp / f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
        path.mkdir(mode=0o700)
        return path

    def _prepare(self, e: _Entry, lower: pathlib.Path, upper_from: pathlib.Path | None, move: bool = False) -> None:
        """Job dir, writable layer (fresh, or copied or moved from a set), overlay, config.json."""
        checkpoints.secure_dir(e.dir)
        if upper_from is not None:
            (checkpoints.take_tree if move else checkpoints.copy_tree)(upper_from, e.dir / "upper")
        overlay.mount(lower, e.dir / "upper", e.dir / "work", e.dir / "rootfs")
        for d in e.job.private_dirs:
            (e.dir / "rootfs" / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.procdir(e.job.name).create(whereami=self.node)
        workdir = self.homefs.source(e.job, e.dir)
        if workdir is None and e.job.workdir is not None:  # none at home: the job (and its sets) go without
            e.job = dataclasses.replace(e.job, workdir=None)
        elif workdir is not None and self.homefs.at_home(e.job):
            e.job = dataclasses.replace(e.job, workdir_mode=workdir.stat().st_mode)
        bundle = checkpoints.secure_dir(e.dir / "bundle")
        config = spec.config(e.job, e.dir / "rootfs", spec.cgroup_path(self.node, e.job.name), workdir,
                             mosix_dir=self.procdir(e.job.name).path)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        (e.dir / "job.json").write_text(json.dumps(e.job.to_dict(), indent=1))

    # Output stretches: stream.json maps each stream to [file offset, logical offset] where the
    # present stretch of the local file began (run: [0, 0]; a restore starts a new stretch).

    def output_stretch(self, name: str, stream: str) -> tuple[int, int, pathlib.Path]:
        """Where the present run of the job's output lives here: (logical offset it starts at, file
        offset it starts at, the file), so output can be sent home at logical offsets."""
        e = self._get(name)
        with e.lock:
            file_start, logical_start = self._stretches(e)[stream]
            return logical_start, file_start, e.dir / stream

    def _stretches(self, e: _Entry) -> dict[str, list[int]]:
        try:
            d = json.loads((e.dir / "stream.json").read_text())
            return {k: [int(d[k][0]), int(d[k][1])] for k in ("stdout", "stderr")}
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return {"stdout": [0, 0], "stderr": [0, 0]}

    def _logical_offsets(self, e: _Entry, sizes: list[int]) -> list[int]:
        st = self._stretches(e)
        return [st[k][1] + size - st[k][0] for k, size in zip(("stdout", "stderr"), sizes, strict=True)]

    def _cut_output(self, e: _Entry, logical: dict[str, int]) -> None:
        """Cut output the restored process will write again, and start a new stretch."""
        st = self._stretches(e)
        new: dict[str, list[int]] = {}
        for stream, offset in logical.items():
            path = e.dir / stream
            size = path.stat().st_size if path.exists() else 0
            file_start, logical_start = st[stream]
            local = file_start + offset - logical_start
            if offset >= logical_start and file_start <= local <= size:
                if path.exists():
                    os.truncate(path, local)
                new[stream] = [local, offset]
            else:
                new[stream] = [size, offset]
        (e.dir / "stream.json").write_text(json.dumps(new))

    def _teardown_layer(self, e: _Entry) -> None:
        self.homefs.release(e.dir)
        overlay.unmount(e.dir / "rootfs")
        for d in ("upper", "work", "rootfs"):
            shutil.rmtree(e.dir / d, ignore_errors=True)

    def _start(self, e: _Entry, launch: collections.abc.Callable[[runc.Stdio], int]) -> None:
        """Give the container fresh pipes, launch it (run or restore), hand the keeper dups of the pipes'
        ends, pump its output, reap it."""
        if self.runtime.knows(e.job.name):
            with contextlib.suppress(runc.Refused):
                self.runtime.delete(e.job.name, force=True)  # a stale record from an earlier life
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if e.job.stdin else (runc.DEVNULL, -1)
        try:
            pid = launch(runc.Stdio(stdin=in_r, stdout=out_w, stderr=err_w))
        except BaseException:
            for fd in (out_r, err_r, *((in_r, in_w) if e.job.stdin else ())):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        (e.dir / "run.json").write_text(json.dumps({"pid": pid}))
        self._keep(e.job.name, {"stdout": out_r, "stderr": err_r}
                   | ({"stdin": in_w, "stdin_r": in_r} if e.job.stdin else {}))
        own_r = -1
        if e.job.stdin:  # the agent keeps a read end of its own too, to take back unread input at a dump
            try:
                own_r = stdin.reopen_reader(in_r)
            finally:
                os.close(in_r)
        self._run_pipes(e, pid, (out_r, err_r), in_w, own_r)

    def _run_pipes(self, e: _Entry, pid: int, outputs: tuple[int, int], in_w: int, own_r: int) -> None:
        """The running job's pumps, feeder (in_w >= 0: mosrun -i) and watching threads."""
        if in_w >= 0:
            self._persist_input(e.dir, e.stdin_start)
            e.feeder = stdin.Feeder(in_w, own_r, self._input_of(e.job.name), e.stdin_start,
                                    on_offset=lambda n: self._persist_input(e.dir, n),
                                    on_eof=lambda: self._let_go(e.job.name, "stdin"))
            e.feeder.start()
        e.pumps = [output.Pump(outputs[0], e.dir / "stdout"), output.Pump(outputs[1], e.dir / "stderr")]
        for p in e.pumps:
            p.start()
        e.generation += 1
        e.exit_code = None
        e.exited = threading.Event()
        e.state = jobs.State.RUNNING
        e.pid = pid
        threading.Thread(target=self._reap, args=(e, e.pid, e.generation, e.exited),
                         name=f"reap {e.job.name}", daemon=True).start()
        if e.job.checkpoint_every:
            threading.Thread(target=self._every, args=(e, e.generation, e.exited, e.job.checkpoint_every),
                             name=f"checkpoint {e.job.name}", daemon=True).start()

    def _reap(self, e: _Entry, pid: int, generation: int, exited: threading.Event) -> None:
        """Wait for the container's init to end; if nobody dumped it, it exited: record how."""
        try:
            code = _wait_exit(pid, lambda: self._recorded_exit(pid))
            for p in list(e.pumps):
                p.wait(5)
            with e.lock:
                if e.generation == generation and e.state == jobs.State.RUNNING:
                    e.state = jobs.State.EXITED
                    e.exit_code = code
                    (e.dir / "exit_code").write_text("" if code is None else f"{code}\n")
                    self._finish_container(e)
        finally:
            exited.set()

    def _every(self, e: _Entry, generation: int, exited: threading.Event, interval: float) -> None:
        """mosrun -A: checkpoint (leaving it running) every interval, for this life of the process."""
        while not exited.wait(interval):
            with e.lock:
                if e.generation != generation or e.state != jobs.State.RUNNING:
                    return
                try:
                    self.checkpoint(e.job.name, keep_running=True, reason="periodic")
                except errors.AgentError as err:
                    log.warning("periodic checkpoint of %s failed: %s", e.job.name, err)

    def _input_of(self, name: str) -> stdin.Source:
        def read(offset: int) -> tuple[bytes, bool]:
            if self.input_source is None:
                return b"", False
            return self.input_source(name, offset)

        return read

    # --- what every dump does before CRIU runs, and its two endings ---------------------------

    def _pause_for_dump(self, e: _Entry) -> Held:
        """Pause the job and make what its dump records whole and of one instant: writes behind through
        its FUSE mount at home, its output pumped to the end, its unread input taken back. It ends in
        `_thaw` (the job goes on here) or `_end_dumped` (it went on elsewhere or into a set)."""
        self.runtime.pause(e.job.name)
        self.homefs.drain(e.dir)
        stdout_offset, stderr_offset = self._logical_offsets(e, [p.drain() for p in e.pumps])
        stdin_offset = e.feeder.hold() if e.feeder is not None else e.stdin_start
        return Held(stdout_offset, stderr_offset, stdin_offset)

    def _thaw(self, e: _Entry) -> None:
        """The dumped job goes on here: feed its input again and resume it if it is paused."""
        if e.feeder is not None:
            e.feeder.release()
        with contextlib.suppress(runc.RuncError):
            if self.runtime.state(e.job.name).status == "paused":
                self.runtime.resume(e.job.name)

    def _end_dumped(self, e: _Entry) -> None:
        """The dumped job's processes are gone (or going): its output to the end, then forget the container."""
        e.state = jobs.State.STOPPED  # before the reaper sees the death: not an exit
        e.generation += 1
        for p in e.pumps:
            p.wait(10)
        self._finish_container(e)
        self._teardown_layer(e)

    def _meta(self, e: _Entry, held: Held, *, serial: int, reason: str, dump_seconds: float) -> checkpoints.Meta:
        """The record of a set dumped from e while held."""
        return checkpoints.Meta(
            job=e.job.to_dict(), serial=serial, time=datetime.datetime.now(datetime.UTC).isoformat(),
            node=self.node, reason=reason, stdout_offset=held.stdout_offset, stderr_offset=held.stderr_offset,
            stdin_offset=held.stdin_offset, image_digest=e.image_digest, dump_seconds=round(dump_seconds, 4))

    # --- the keeper and adoption -------------------------------------------------------------

    def _keep(self, name: str, fds: dict[str, int]) -> None:
        """Hand the keeper dups of the job's pipe ends (it keeps them open while this agent is down)."""
        if self.keeper is None:
            return
        try:
            self.keeper.put(name, fds)
        except fdstore.KeeperError as err:
            log.warning("job %s: its pipes are not kept across an agent restart: %s", name, err)

    def _let_go(self, name: str, fd_name: str | None = None) -> None:
        """The keeper closes its dups of the job's pipe ends (all, or the one named)."""
        if self.keeper is None:
            return
        try:
            if fd_name is None:
                self.keeper.drop(name)
            else:
                self.keeper.close(name, fd_name)
        except fdstore.KeeperError as err:
            log.warning("job %s: the keeper did not let go of its pipes: %s", name, err)

    @staticmethod
    def _persist_input(job_dir: pathlib.Path, offset: int) -> None:
        """Record the input offset fed so far, in place (one small write: a kill leaves it whole)."""
        fd = os.open(job_dir / STDIN_OFFSET, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, f"{offset:020d}\n".encode(), 0)
        finally:
            os.close(fd)

    def _recorded_exit(self, pid: int) -> int | None:
        return fdstore.read_exit(self.state_dir, pid)

    def set_owner(self, name: str, owner: dict[str, str]) -> None:
        """Keep with the job who it belongs to (the daemon's job key and home node), for after a restart."""
        e = self._get(name)
        with e.lock:
            (e.dir / "owner.json").write_text(json.dumps(owner))

    def owner(self, name: str) -> dict[str, str]:
        """What `set_owner` kept ({} if nothing)."""
        try:
            return {str(k): str(v) for k, v in json.loads((self._job_dir(name) / "owner.json").read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def adopt(self) -> list[str]:
        """After a restart of this agent: take back every job its state dir, runc root and keeper say it had.

        A container still running is Running again, on the same pipes (fetched back from the keeper),
        untouched; one that ended meanwhile is Exited with the code the keeper recorded, its output
        pumped in to the end; a frozen job is Frozen; any other job dir is Stopped (it left). A running
        container whose pipes nobody kept (no keeper) cannot go on: it is killed, and the job is not
        adopted (the daemon restores it from a checkpoint, as after the loss of a node).
        """
        try:
            listed = {c.id: c for c in self.runtime.list()}
        except runc.RuncError as err:
            log.warning("adoption: runc list failed: %s", err)
            listed = {}
        held = set(self._keeper_keys())
        adopted: list[str] = []
        keep_records: set[int] = set()
        for path in sorted((self.state_dir / "jobs").glob("*/job.json")):
            name = path.parent.name
            try:
                job = jobs.Job.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("adoption: %s unreadable: %s", path, err)
                continue
            with self._lock:
                if name in self._entries:
                    continue
            e = _Entry(job=dataclasses.replace(job, name=name), dir=path.parent)
            pid = self._recorded_pid(e)
            if pid is not None:
                keep_records.add(pid)
            if not self._adopt_one(e, listed.get(name), name in held, pid):
                continue
            with self._lock:
                self._entries[name] = e
            adopted.append(name)
            log.info("adopted job %s: %s%s", name, e.state.value,
                     f" (pid {e.pid})" if e.state == jobs.State.RUNNING else
                     f" (exit code {e.exit_code})" if e.state == jobs.State.EXITED else "")
        for key in held - set(adopted):
            self._let_go(key)
        fdstore.forget_exits(self.state_dir, keep_records)
        return adopted

    def _keeper_keys(self) -> list[str]:
        if self.keeper is None:
            return []
        try:
            return self.keeper.keys()
        except fdstore.KeeperError as err:
            log.warning("adoption: %s", err)
            return []

    @staticmethod
    def _recorded_pid(e: _Entry) -> int | None:
        try:
            return int(json.loads((e.dir / "run.json").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _adopt_one(self, e: _Entry, container: runc.State | None, held: bool, pid: int | None) -> bool:
        """Set the adopted entry's state; False if the job cannot be adopted."""
        name = e.job.name
        with contextlib.suppress(OSError, ValueError):
            e.image_digest = self.cache.resolve(e.job.image).identity
        code_file = e.dir / "exit_code"
        if code_file.exists():
            text = code_file.read_text().strip()
            e.state, e.exit_code = jobs.State.EXITED, int(text) if text.lstrip("-").isdigit() else None
            e.exited.set()
            self._finish_container(e)
            return True
        if container is not None and container.status in ("running", "paused", "created"):
            fds = self._fetch(name) if held else {}
            if "stdout" not in fds or "stderr" not in fds:
                for fd in fds.values():
                    os.close(fd)
                log.warning("job %s: its pipes were not kept: it cannot go on (killed)", name)
                with contextlib.suppress(runc.RuncError):
                    self.runtime.delete(name, force=True)
                return False
            if container.status == "paused":  # the agent died in the middle of a dump
                with contextlib.suppress(runc.RuncError):
                    self.runtime.resume(name)
            e.stdin_start = self._read_input_offset(e.dir)
            own_r = -1
            if "stdin" in fds and "stdin_r" in fds:
                own_r = stdin.reopen_reader(fds["stdin_r"])
            if "stdin_r" in fds:
                os.close(fds.pop("stdin_r"))
            self._run_pipes(e, container.pid, (fds["stdout"], fds["stderr"]), fds.get("stdin", -1), own_r)
            return True
        if container is not None and pid is not None and (code := self._recorded_exit(pid)) is not None:
            fds = self._fetch(name) if held else {}  # it ended while the agent was away: take its last output in
            for stream in ("stdout", "stderr"):
                if stream in fds:
                    pump = output.Pump(fds.pop(stream), e.dir / stream)
                    pump.stop()
            for fd in fds.values():
                os.close(fd)
            e.state, e.exit_code = jobs.State.EXITED, code
            code_file.write_text("" if code is None else f"{code}\n")
            e.exited.set()
            self._finish_container(e)
            return True
        frozen = self.state_dir / "frozen" / name
        if (frozen / checkpoints.META).exists():
            e.state = jobs.State.FROZEN
            with contextlib.suppress(errors.AgentError, OSError, ValueError):
                e.freeze_reason = checkpoints.read_meta(frozen).reason.removeprefix("freeze:")
            return True
        e.state = jobs.State.STOPPED
        e.exited.set()
        if container is not None:
            with contextlib.suppress(runc.RuncError):
                self.runtime.delete(name, force=True)
        return True

    def _fetch(self, name: str) -> dict[str, int]:
        if self.keeper is None:
            return {}
        try:
            return self.keeper.get(name)
        except fdstore.KeeperError as err:
            log.warning("job %s: its pipes could not be fetched back: %s", name, err)
            return {}

    @staticmethod
    def _read_input_offset(job_dir: pathlib.Path) -> int:
        try:
            return int((job_dir / STDIN_OFFSET).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _finish_container(self, e: _Entry) -> None:
        """After the process is gone: flush output, stop feeding input, forget the runc record."""
        for p in e.pumps:
            p.stop()
        e.pumps = []
        if e.feeder is not None:
            e.feeder.stop()
            e.feeder = None
        with contextlib.suppress(runc.Refused):
            self.runtime.delete(e.job.name, force=True)
        self._let_go(e.job.name)
        (e.dir / "run.json").unlink(missing_ok=True)
        self.homefs.release(e.dir)  # the FUSE mount of its home directory ends with the process

    def _dump(self, e: _Entry, final: pathlib.Path, serial: int, leave_running: bool, reason: str) -> None:
        """Pause, drain output, copy the writable layer, checkpoint; publish the set."""
        staging = checkpoints.staging_for(final)
        work = self._scratch(f"dump-{e.job.name}")
        try:
            held = self._pause_for_dump(e)
            checkpoints.copy_tree(e.dir / "upper", staging / checkpoints.UPPER)
            started = time.monotonic()
            try:
                self.runtime.checkpoint(e.job.name, staging / checkpoints.IMAGES, work, leave_running=leave_running)
            except runc.Refused as refused:
                raise unsupported.classify(refused, work / "dump.log") from refused
            seconds = time.monotonic() - started
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            self._thaw(e)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if leave_running:
            self._thaw(e)
        else:
            self._end_dumped(e)
        checkpoints.publish(staging, final, self._meta(e, held, serial=serial, reason=reason, dump_seconds=seconds))


def _wait_exit(pid: int, recorded: collections.abc.Callable[[], int | None] = lambda: None) -> int | None:
    """The exit status of pid as a shell reports it. If it is not our child (a container adopted after a
    restart: the keeper is its parent), what `recorded` finds once it is gone; None if nothing does."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        _wait_foreign(pid)
        deadline = time.monotonic() + RECORD_WAIT
        while (code := recorded()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return code
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _wait_foreign(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)
    return None
