"""CRIU: the start-up check over its RPC (`criu swrk` via pycriu), and checkpoint images as data.

`inspect` reads a checkpoint's fdinfo/files images with pycriu to list the descriptors the
process had open (mosrun -I); `remap` rewrites the files image so a restore opens another path
for a descriptor (mosrun -R ... -O fd=path). Images are never edited in place: remap writes a
staging directory of hard links plus the one rewritten file.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pathlib
import shutil
import stat
import tempfile
from typing import Any

import pycriu.images  # type: ignore[import-not-found,unused-ignore]
from pycriu import rpc_pb2  # type: ignore[import-not-found,unused-ignore]

from mosix.agent import errors

# pycriu's __init__ star-imports its `criu` class over its `criu` module: reach the module itself.
rpc = importlib.import_module("pycriu.criu")


class CriuError(errors.AgentError):
    """Any CRIU failure."""


class Unavailable(CriuError):
    """CRIU could not be talked to (missing binary, broken RPC)."""


class Refused(CriuError):
    """CRIU answered and said no (kernel unsupported, bad request); keeps CRIU's errno."""

    def __init__(self, message: str, errno: int | None) -> None:
        self.errno = errno
        super().__init__(message)


def check(binary: str = "criu") -> None:
    """Ask CRIU over RPC whether this kernel supports checkpoint/restore (run once at agent start).

    pycriu's own `check()` sends no options, and `criu swrk` then fails without a word: send
    the request with a work directory for CRIU's log, which is quoted back on refusal.
    """
    path = shutil.which(binary)
    if path is None:
        raise Unavailable(f"{binary} not found on PATH: install criu (4.x)")
    c = rpc.criu()
    c.use_binary(path)  # pycriu execv()s it: it needs the full path
    with tempfile.TemporaryDirectory(prefix="mosix-criu-check-") as tmp:
        dir_fd = os.open(tmp, os.O_DIRECTORY)
        try:
            req = rpc_pb2.criu_req()
            req.type = rpc_pb2.CHECK
            req.opts.images_dir_fd = dir_fd
            req.opts.log_file = "check.log"
            req.opts.log_level = 2
            try:
                resp = c._send_req_and_recv_resp(req)
            except rpc.CRIUExceptionInternal as e:
                raise Unavailable(f"criu could not be run ({path}): {e}") from e
        finally:
            os.close(dir_fd)
        if not resp.success:
            tail = " / ".join(errors.log_tail(pathlib.Path(tmp, "check.log"), 5))
            raise Refused(f"criu check refused (errno {resp.cr_errno}): {tail}", resp.cr_errno)


STD_NAMES = {0: "Standard Input (0)", 1: "Standard Output(1)", 2: "Standard Error (2)"}
ACCESS = {os.O_RDONLY: "Read-Only", os.O_WRONLY: "Write-Only", os.O_RDWR: "Read-Write"}


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """One open file descriptor of the checkpointed process."""

    fd: int
    kind: str  # CRIU's file type: REG, PIPE, UNIXSK, ...
    path: str | None  # for regular files and directories
    offset: int | None
    access: str  # Read-Only, Write-Only, Read-Write
    special: bool  # not a regular file: pipe, socket, device, ...

    def describe(self) -> str:
        """One line as `mosrun -I` prints it."""
        head = STD_NAMES.get(self.fd, f"File-Descriptor #{self.fd}")
        if self.special or self.path is None:
            return f"{head}: special file, {self.access}"
        return f"{head}: {self.path}, offset={self.offset}, {self.access}"


def load(path: pathlib.Path) -> dict[str, Any]:
    """One CRIU image file as a dict (pycriu's non-pretty form: numbers stay numbers)."""
    try:
        with open(path, "rb") as f:
            img: dict[str, Any] = pycriu.images.load(f)
    except FileNotFoundError as e:
        raise errors.CheckpointError(f"checkpoint image {path.name} is missing in {path.parent}") from e
    return img


def inspect(images_dir: pathlib.Path) -> list[Descriptor]:
    """The open descriptors of the checkpoint's first process (the job's command), by fd."""
    tree = load(images_dir / "pstree.img")["entries"]
    if not tree:
        raise errors.CheckpointError(f"{images_dir}: empty process tree")
    pid = tree[0]["pid"]
    files_id = load(images_dir / f"ids-{pid}.img")["entries"][0]["files_id"]
    files = {e["id"]: e for e in load(images_dir / "files.img")["entries"]}
    out = []
    for fdi in load(images_dir / f"fdinfo-{files_id}.img")["entries"]:
        entry = files.get(fdi["id"], {})
        kind = str(pycriu.images.pb.fd_types.Name(fdi["type"])) if isinstance(fdi["type"], int) else str(fdi["type"])
        reg = entry.get("reg")
        if reg is not None:
            mode = int(reg.get("mode", 0))
            flags = int(reg.get("flags", 0))
            special = bool(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
            out.append(Descriptor(fd=fdi["fd"], kind=kind, path=reg["name"], offset=int(reg.get("pos", 0)),
                                  access=ACCESS.get(flags & os.O_ACCMODE, "Read-Write"), special=special))
        else:
            out.append(Descriptor(fd=fdi["fd"], kind=kind, path=None, offset=None,
                                  access=_access_of(entry), special=True))
    return sorted(out, key=lambda d: d.fd)


def _access_of(entry: dict[str, Any]) -> str:
    for v in entry.values():
        if isinstance(v, dict) and isinstance(v.get("flags"), int):
            return ACCESS.get(v["flags"] & os.O_ACCMODE, "Read-Write")
    return "Read-Write"


def remap(images_dir: pathlib.Path, staging: pathlib.Path, fd_paths: dict[int, str]) -> None:
    """Make `staging` a copy of the images where each fd in fd_paths opens the given path instead.

    The path is as the job sees it (inside its container). The offset is kept, as MOSIX does;
    the recorded file size is dropped so CRIU accepts a file of another size.
    """
    by_fd = {d.fd: d for d in inspect(images_dir)}
    pid = load(images_dir / "pstree.img")["entries"][0]["pid"]
    files_id = load(images_dir / f"ids-{pid}.img")["entries"][0]["files_id"]
    fdinfo = {e["fd"]: e for e in load(images_dir / f"fdinfo-{files_id}.img")["entries"]}
    files = load(images_dir / "files.img")
    for fd, path in fd_paths.items():
        d = by_fd.get(fd)
        if d is None or d.path is None or d.special:
            raise errors.CheckpointError(f"fd {fd} is not an open regular file in this checkpoint")
        if not path.startswith("/"):
            raise errors.CheckpointError(f"-O{fd}={path}: the new path must be absolute")
        for e in files["entries"]:
            if e["id"] == fdinfo[fd]["id"]:
                e["reg"]["name"] = path
                e["reg"].pop("size", None)
    staging.mkdir(mode=0o700, parents=True)
    for item in images_dir.iterdir():
        if item.name == "files.img" or not item.is_file():
            continue
        try:
            os.link(item, staging / item.name)
        except OSError:
            shutil.copy2(item, staging / item.name)
    fd = os.open(staging / "files.img", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        pycriu.images.dump(files, f)
