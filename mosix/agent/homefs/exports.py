"""The home agent's side: file operations on the working directories of the jobs whose home it is.

Every operation names the job and a path relative to its directory; `confine` keeps the path
inside. Open files are kept here as descriptors behind numbered handles, so reads and writes
at offsets go straight to the real file (O_APPEND included), one chunk per request.
"""

from __future__ import annotations

import errno
import itertools
import os
import pathlib
import stat
import threading
from typing import Any

from mosix.agent.homefs import confine, syscalls

OPEN_FLAGS = os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_CREAT | os.O_EXCL | os.O_SYNC | os.O_DSYNC


# A write this large (a streaming writer's) starts its way to the disk at once, as the next arrives:
# a later fsync (or close and fsync) then waits for the last bytes only, not for the whole file.
WRITE_OUT_FROM = 1 << 18


class NotExported(PermissionError):
    """This node serves no directory for that job (not its home, or the job is gone)."""

    def __init__(self, job: str) -> None:
        super().__init__(errno.EACCES, f"no working directory exported for job {job!r}")


def attrs(st: os.stat_result) -> dict[str, int]:
    """The stat fields the FUSE side needs, as JSON."""
    return {"mode": st.st_mode, "nlink": st.st_nlink, "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
            "rdev": st.st_rdev, "blocks": st.st_blocks, "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


class Exports:
    """Job name → its working directory here, and the files peers have open in it."""

    def __init__(self) -> None:
        self._roots: dict[str, pathlib.Path] = {}
        self._handles: dict[str, dict[int, int]] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def export(self, job: str, directory: pathlib.Path) -> None:
        """Serve `directory` as the working directory of `job` (the job's home is here)."""
        with self._lock:
            self._roots[job] = directory
            self._handles.setdefault(job, {})

    def unexport(self, job: str) -> None:
        """Stop serving the job's directory and close what peers left open in it."""
        with self._lock:
            self._roots.pop(job, None)
            fds = self._handles.pop(job, {})
        for fd in fds.values():
            os.close(fd)

    def jobs(self) -> set[str]:
        """The jobs served."""
        with self._lock:
            return set(self._roots)

    def _root(self, job: str) -> pathlib.Path:
        with self._lock:
            root = self._roots.get(job)
        if root is None:
            raise NotExported(job)
        return root

    def _path(self, job: str, rel: str, follow: bool = True) -> pathlib.Path:
        return confine.resolve(self._root(job), rel, follow=follow)

    def _fd(self, job: str, fh: int) -> int:
        with self._lock:
            fd = self._handles.get(job, {}).get(fh)
        if fd is None:
            raise OSError(errno.EBADF, f"no open file {fh} for job {job!r}")
        return fd

    def _keep(self, job: str, fd: int) -> int:
        with self._lock:
            if job not in self._roots:
                os.close(fd)
                raise NotExported(job)
            fh = next(self._numbers)
            self._handles[job][fh] = fd
            return fh

    # --- operations, one per FUSE request that needs home --------------------------------

    def meta(self, job: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """A metadata operation by name (the body of one `POST .../meta`)."""
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"no homefs operation {op!r}")
        result: dict[str, Any] = handler(job, **args)
        return result

    def op_stat(self, job: str, path: str) -> dict[str, Any]:
        p = self._path(job, path, follow=False)
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            self._path(job, path)  # a symlink is shown only if it stays inside
        return attrs(st)

    def op_list(self, job: str, path: str) -> dict[str, Any]:
        d = self._path(job, path)
        entries = []
        with os.scandir(d) as it:
            for entry in it:
                try:
                    entries.append([entry.name, attrs(entry.stat(follow_symlinks=False))])
                except FileNotFoundError:
                    continue
        return {"entries": sorted(entries)}

    def op_readlink(self, job: str, path: str) -> dict[str, Any]:
        p = self._path(job, path, follow=False)
        self._path(job, path)  # refuse links out of the directory
        return {"target": os.readlink(p)}

    def op_open(self, job: str, path: str, flags: int) -> dict[str, Any]:
        p = self._path(job, path)
        fd = os.open(p, (flags & OPEN_FLAGS & ~os.O_CREAT) | os.O_NOFOLLOW | os.O_CLOEXEC)
        return {"fh": self._keep(job, fd), "attrs": attrs(os.fstat(fd))}

    def op_create(self, job: str, path: str, flags: int, mode: int) -> dict[str, Any]:
        p = self._path(job, path, follow=False)
        fd = os.open(p, (flags & OPEN_FLAGS) | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o7777)
        return {"fh": self._keep(job, fd), "attrs": attrs(os.fstat(fd))}

    def op_release(self, job: str, fh: int) -> dict[str, Any]:
        with self._lock:
            fd = self._handles.get(job, {}).pop(fh, None)
        if fd is not None:
            os.close(fd)
        return {}

    def op_fsync(self, job: str, fh: int, datasync: bool) -> dict[str, Any]:
        fd = self._fd(job, fh)
        if datasync:
            os.fdatasync(fd)
        else:
            os.fsync(fd)
        return {}

    def op_setattr(self, job: str, path: str, *, fh: int | None = None, size: int | None = None,
                   mode: int | None = None, atime_ns: int | None = None, mtime_ns: int | None = None) -> dict[str, Any]:
        p = self._path(job, path)
        if size is not None:
            if fh is not None:
                os.ftruncate(self._fd(job, fh), size)
            else:
                os.truncate(p, size)
        if mode is not None:
            os.chmod(p, mode & 0o7777)
        if atime_ns is not None or mtime_ns is not None:
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns if atime_ns is None else atime_ns,
                            st.st_mtime_ns if mtime_ns is None else mtime_ns))
        return attrs(p.stat())

    def op_mkdir(self, job: str, path: str, mode: int) -> dict[str, Any]:
        p = self._path(job, path, follow=False)
        os.mkdir(p, mode & 0o7777)
        return attrs(p.lstat())

    def op_symlink(self, job: str, path: str, target: str) -> dict[str, Any]:
        p = self._path(job, path, follow=False)
        os.symlink(target, p)
        return attrs(p.lstat())

    def op_unlink(self, job: str, path: str) -> dict[str, Any]:
        os.unlink(self._path(job, path, follow=False))
        return {}

    def op_rmdir(self, job: str, path: str) -> dict[str, Any]:
        os.rmdir(self._path(job, path, follow=False))
        return {}

    def op_rename(self, job: str, path: str, new: str) -> dict[str, Any]:
        os.rename(self._path(job, path, follow=False), self._path(job, new, follow=False))
        return {}

    def op_statfs(self, job: str, path: str) -> dict[str, Any]:
        s = os.statvfs(self._path(job, path))
        return {"bsize": s.f_bsize, "frsize": s.f_frsize, "blocks": s.f_blocks, "bfree": s.f_bfree,
                "bavail": s.f_bavail, "files": s.f_files, "ffree": s.f_ffree, "favail": s.f_favail,
                "namemax": s.f_namemax}

    # --- data ------------------------------------------------------------------------------

    def read_into(self, job: str, fh: int, offset: int, buf: memoryview) -> int:
        """Fill buf from `offset` of an open file, as far as the file goes; bytes read."""
        return os.preadv(self._fd(job, fh), [buf], offset)

    def write(self, job: str, fh: int, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Write at `offset` (at the end, for a file opened O_APPEND); bytes written."""
        fd = self._fd(job, fh)
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
        if done >= WRITE_OUT_FROM:
            syscalls.write_out(fd, offset, done)
        return done
