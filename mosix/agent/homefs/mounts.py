"""Which working directory a job's container gets, decided on the node that starts or restores it.

At home the real directory is bound in. Away, a FUSE process (`fs`) mounts the home agent's
export at <job dir>/home and that is bound in instead, at the same path inside the container:
the container's mount tree is the same everywhere, which is what CRIU needs to restore it, and
runc hands the bind mount to CRIU as an external mount, so a restore reopens the job's files by
path on whichever source this node gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time

from mosix.agent import errors, jobs, spec, tls
from mosix.agent.homefs import syscalls, wire

log = logging.getLogger(__name__)
MOUNT_TIMEOUT = 30.0
FS_MODULE = "mosix.agent.homefs.fs"  # the FUSE process: python -m FS_MODULE … MOUNTPOINT
READ_AHEAD_KB = 4096  # the kernel's FUSE default is 128 KiB: one request per 128 KiB of a sequential read


def _bindable(workdir: str) -> bool:
    """Not the root, nor where the container's own /proc, /dev and /sys are."""
    path = pathlib.PurePosixPath(workdir)
    return path != pathlib.PurePosixPath("/") and not any(
        path.is_relative_to(m["destination"]) for m in spec.MOUNTS)


def _device(mountpoint: pathlib.Path) -> str | None:
    """The device (major:minor) mounted at mountpoint, found without touching it: a stat of a FUSE
    root is a request to its daemon, which may be waiting on whoever asks (or be gone)."""
    real = os.path.join(os.path.realpath(mountpoint.parent), mountpoint.name)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == real:
                return fields[2]
    return None


def is_mounted(mountpoint: pathlib.Path) -> bool:
    """Whether something is mounted at mountpoint (without touching it)."""
    return _device(mountpoint) is not None


def _tune(mountpoint: pathlib.Path) -> None:
    """Sequential reads in large requests: raise the mount's read-ahead (its own bdi, nobody else's).
    Only once the FUSE process has answered the kernel's INIT: the kernel then lowers the bdi's
    read-ahead to what INIT allowed (128 KiB), undoing a raise made before. The stat waits for INIT
    (our own process answers it, home or not: the root has a stand-in while home is away)."""
    try:
        os.stat(mountpoint)
        pathlib.Path(f"/sys/class/bdi/{_device(mountpoint)}/read_ahead_kb").write_text(str(READ_AHEAD_KB))
    except OSError as e:
        log.warning("read-ahead of %s not raised: %s", mountpoint, e)


def _syncfs(mountpoint: pathlib.Path) -> None:
    """Write back the mount's dirty pages and wait for them."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syscalls.syncfs(fd, mountpoint)
    finally:
        os.close(fd)


def unmount(mountpoint: pathlib.Path) -> None:
    """Detach the mount (lazily: a dead FUSE daemon must not hold the agent)."""
    if is_mounted(mountpoint):
        proc = subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise errors.AgentError(f"umount {mountpoint} failed: {proc.stderr.strip()}")


@dataclasses.dataclass
class Mounter:
    """One agent's working-directory mounts: `url` is this agent's own API (a job whose home_url it is
    is at home), `identity` the TLS files the FUSE processes use to reach other homes."""

    url: str | None = None
    identity: tls.Identity | None = None
    _procs: dict[pathlib.Path, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def at_home(self, job: jobs.Job) -> bool:
        """Whether this agent is the job's home node."""
        return job.home_url is None or job.home_url == self.url

    def source(self, job: jobs.Job, job_dir: pathlib.Path) -> pathlib.Path | None:
        """The directory to bind at job.workdir (None: the job has none here to bind)."""
        if job.workdir is None:
            return None
        if not _bindable(job.workdir):
            log.warning("job %s: working directory %s would cover the container's own; running without it",
                        job.name, job.workdir)
            return None
        if self.at_home(job):
            real = pathlib.Path(job.workdir)
            if not real.is_dir():
                log.warning("job %s: working directory %s is not on this home node; running without it",
                            job.name, real)
                return None
            return real
        return self._mount(job, job_dir / "home")

    def _mount(self, job: jobs.Job, mountpoint: pathlib.Path) -> pathlib.Path:
        if self.identity is None or job.home_url is None:
            raise errors.JobError(f"job {job.name}: this agent has no TLS identity to mount its home directory")
        self.release(mountpoint.parent)
        mountpoint.mkdir(mode=0o700, exist_ok=True)
        logfile = mountpoint.parent / "homefs.log"
        cmd = [sys.executable, "-m", FS_MODULE, "--url", job.home_url, "--job", job.name,
               "--tls-ca", str(self.identity.ca), "--tls-cert", str(self.identity.cert),
               "--tls-key", str(self.identity.key), "--root-mode", oct(job.workdir_mode), str(mountpoint)]
        with logfile.open("ab") as log_out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_out, stderr=log_out,
                                    start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_mounted(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise errors.JobError(f"job {job.name}: home directory from {job.home_url} not mounted: "
                                      + " / ".join(errors.log_tail(logfile, 3)))
            time.sleep(0.02)
        _tune(mountpoint)
        with self._lock:
            self._procs[mountpoint] = proc
        log.info("job %s: %s mounted from %s", job.name, job.workdir, job.home_url)
        return mountpoint

    def server_pid(self, job_dir: pathlib.Path) -> int | None:
        """The FUSE process serving the job's home mount here, if it has one: the one this agent started,
        or, for a mount its predecessor left before a crash, the `fs` process named with that mount point."""
        mountpoint = job_dir / "home"
        with self._lock:
            proc = self._procs.get(mountpoint)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        if not is_mounted(mountpoint):
            return None
        for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                args = cmdline.read_bytes().split(b"\0")
                if FS_MODULE.encode() in args and os.fsencode(mountpoint) in args:
                    return int(cmdline.parent.name)
        return None

    def drain(self, job_dir: pathlib.Path) -> None:
        """Return once every write the job made through its FUSE mount here is at home (the job is paused:
        a dump must not leave writes behind in a FUSE process about to go); a write that failed at home
        raises, so the dump fails and the job, resumed here, is told at its next write or close. A mount
        left by this agent's predecessor (its FUSE process outlives an agent crash) is drained alike."""
        mountpoint = job_dir / "home"
        if not is_mounted(mountpoint):  # one this agent mounted, or its predecessor did before a crash
            return
        try:
            _syncfs(mountpoint)  # what the kernel's writeback cache holds, to the FUSE process
            os.stat(mountpoint / wire.DRAIN.decode())
        except FileNotFoundError:
            return
        except OSError as e:
            raise errors.JobError(f"writes to the home directory from {job_dir.name} not all done: {e}") from e

    def release(self, job_dir: pathlib.Path) -> None:
        """Unmount the job's FUSE mount here, if it has one, and end its process (the job left or ended)."""
        mountpoint = job_dir / "home"
        with self._lock:
            proc = self._procs.pop(mountpoint, None)
        unmount(mountpoint)
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            mountpoint.rmdir()

    def close(self) -> None:
        """Unmount every FUSE mount of this agent."""
        with self._lock:
            dirs = [m.parent for m in self._procs]
        for d in dirs:
            self.release(d)
