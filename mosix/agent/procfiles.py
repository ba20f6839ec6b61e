"""The files of `/run/mosix/` inside a job container: MOSIX's `/proc/self/{whereami,nmigs,lock,migrate,
needmem,clear}` plus `checkpoint`, as plain files in a per-job host directory the agent owns and
bind-mounts into the container.

Plain files, not FUSE: runc checkpoints a bind mount as an external mount and its restore maps it to
the same destination on the target, so CRIU dumps and restores the job without a FUSE daemon in the
way; the target's agent makes its own directory first (`create`), which is what makes `whereami`
show the new node at once.

The agent writes the read side (`publish`) by atomic rename, so a reader never sees half a value.
A write by the process is noticed by the agent's next pass (`take`): for `lock` and `needmem`, a
content that differs from what the agent last published; for the request files `migrate`, `clear`
and `checkpoint`, any content (taken by renaming the file away, then emptied). What the agent last
published is kept beside the directory, outside the container, so an agent restart reads it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import stat

MOUNT_POINT = "/run/mosix"
WHEREAMI, NMIGS, LOCK, NEEDMEM = "whereami", "nmigs", "lock", "needmem"
MIGRATE, CLEAR, CHECKPOINT = "migrate", "clear", "checkpoint"
PUBLISHED = (WHEREAMI, NMIGS, LOCK, NEEDMEM)  # the agent's values; lock and needmem are writable too
READ_ONLY = (WHEREAMI, NMIGS)  # put right on every publish if the job wrote them
REQUESTS = (MIGRATE, CLEAR, CHECKPOINT)  # write-only: each write is one request
MAX_WRITE = 256  # bytes of a request the agent reads; a value is a short word


@dataclasses.dataclass(frozen=True)
class View:
    """What the job reads: where it runs, how often it moved, whether it is pinned, its memory need (0: none)."""

    whereami: str
    nmigs: int = 0
    locked: bool = False
    needmem: int = 0

    def files(self) -> dict[str, str]:
        return {
            WHEREAMI: self.whereami,
            NMIGS: str(self.nmigs),
            LOCK: "1" if self.locked else "0",
            NEEDMEM: str(self.needmem),
        }


@dataclasses.dataclass(frozen=True)
class Write:
    """One write by the process: the file and its first line, stripped."""

    file: str
    value: str


def _state(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".published.json")


def _replace(path: pathlib.Path, text: str, mode: int) -> None:
    """Write a file by atomic rename. The directory is the job's to write too: whatever it left under the
    temporary name is removed, never followed (O_EXCL | O_NOFOLLOW), so no symlink leads the agent out."""
    tmp = path.with_name(f".{path.name}.new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _first_line(path: pathlib.Path) -> str:
    """The first line of a regular file, stripped; "" for anything else the job may have put there (a
    symlink is not followed, a FIFO not waited on). FileNotFoundError when there is nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, MAX_WRITE).decode(errors="replace").strip().split("\n", 1)[0].strip()
    finally:
        os.close(fd)


class ProcDir:
    """One job's `/run/mosix/` directory on this agent."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def create(self, whereami: str) -> None:
        """Make the directory for a (re)start here: `whereami` names this node; files that exist (a restore on
        the same node) keep their values, missing ones get defaults."""
        self.path.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.path.chmod(0o755)
        old = self._published()
        values = View(whereami=whereami).files() | {k: v for k, v in old.items() if k != WHEREAMI}
        for name in REQUESTS:
            if not (self.path / name).is_symlink() and not (self.path / name).exists():
                _replace(self.path / name, "", 0o666)
        self._publish(values, force=True)

    def publish(self, view: View) -> None:
        """Show the agent's values; files whose value did not change are left alone."""
        self._publish(view.files(), force=False)

    def take(self) -> list[Write]:
        """The process's writes since the last pass, in the order the files are listed above; each
        taken once. A value the agent never published (a fresh agent) is not taken as a write."""
        published = self._published()
        found: list[Write] = []
        for name in (LOCK, NEEDMEM):
            with contextlib.suppress(FileNotFoundError):
                value = _first_line(self.path / name)
                if name in published and value != published[name]:
                    found.append(Write(name, value))
        if found:  # taken once: the next publish shows the agent's value again, whatever it is
            self._save(published | {w.file: w.value for w in found})
        for name in REQUESTS:
            path = self.path / name
            taken = self.path / f".{name}.taken"
            try:
                st = path.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    continue
                path.replace(taken)
            except FileNotFoundError:
                continue
            _replace(path, "", 0o666)
            found.append(Write(name, _first_line(taken)))
            taken.unlink()
        return found

    def locked(self) -> bool:
        """True when the job is pinned here: the agent published 1, or the process wrote 1 since."""
        try:
            return _first_line(self.path / LOCK) == "1"
        except FileNotFoundError:
            return False

    def read(self, name: str) -> str:
        """A file's value as the job reads it."""
        return _first_line(self.path / name)

    def _published(self) -> dict[str, str]:
        try:
            d = json.loads(_state(self.path).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}

    def _publish(self, values: dict[str, str], *, force: bool) -> None:
        old = self._published()
        changed = False
        for name, value in values.items():
            if force or old.get(name) != value or (name in READ_ONLY and self._shown(name) != value):
                mode = 0o644 if name in READ_ONLY else 0o666
                _replace(self.path / name, value + "\n", mode)
                changed = True
        if changed:
            self._save(old | values)

    def _shown(self, name: str) -> str | None:
        try:
            return _first_line(self.path / name)
        except FileNotFoundError:
            return None

    def _save(self, published: dict[str, str]) -> None:
        tmp = _state(self.path).with_suffix(".tmp")
        tmp.write_text(json.dumps(published))
        tmp.chmod(0o600)
        os.replace(tmp, _state(self.path))
