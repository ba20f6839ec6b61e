"""Checkpoint sets on disk: naming (`base.1`, `base.2`, ... recycled after `max_sets`), layout,
metadata, and root-only permissions.

A set is a directory holding everything a restore on any agent needs:
    meta.json   the job, when/where/why it was taken, the stdout/stderr/stdin offsets at the dump
    images/     CRIU's images (from runc checkpoint)
    upper/      the job's writable layer (its private files, which CRIU's file images refer to)
A set is written under a temporary name and renamed into place, so a set that exists is whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
from typing import Any

from mosix.agent import errors

META = "meta.json"
IMAGES = "images"
UPPER = "upper"


@dataclasses.dataclass(frozen=True)
class Meta:
    """What a set says about itself."""

    job: dict[str, Any]
    serial: int
    time: str
    node: str
    reason: str  # checkpoint, checkstop, exit, freeze:<Manual|Expelled|Auto>, migration
    stdout_offset: int
    stderr_offset: int
    image_digest: str  # the image's identity (images.Image.identity) the set must be restored on
    dump_seconds: float
    stdin_offset: int = 0  # input (mosrun -i) the process had consumed: a restore feeds on from there

    def to_json(self) -> str:
        """The meta.json text."""
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


def secure_dir(path: pathlib.Path) -> pathlib.Path:
    """Create a directory, and any missing parents, readable by root only.

    A directory that exists is left as it is: it may be one the user named and shares (the
    parent of `mosrun -C/tmp/ckpt`'s sets is /tmp); what is inside is made root-only instead.
    """
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        d.chmod(0o700)  # mkdir's mode is cut by the umask
    return path


def read_meta(set_dir: pathlib.Path) -> Meta:
    """The meta.json of a set; CheckpointError if the set is not whole."""
    try:
        d = json.loads((set_dir / META).read_text())
        meta = Meta(**d)
    except (OSError, ValueError, TypeError) as e:
        raise errors.CheckpointError(f"{set_dir} is not a checkpoint set: {e}") from e
    if not (set_dir / IMAGES / "inventory.img").exists() or not (set_dir / UPPER).is_dir():
        raise errors.CheckpointError(f"{set_dir} is incomplete (images or writable layer missing)")
    return meta


def sets_of(base: pathlib.Path) -> list[pathlib.Path]:
    """Existing sets `base.N`, oldest serial first."""
    found = []
    if base.parent.is_dir():
        for p in base.parent.iterdir():
            suffix = p.name[len(base.name) + 1:]
            if p.name.startswith(base.name + ".") and suffix.isdigit() and (p / META).exists():
                found.append(p)
    return sorted(found, key=_serial_of)


def _serial_of(p: pathlib.Path) -> int:
    try:
        return int(json.loads((p / META).read_text())["serial"])
    except (OSError, ValueError, KeyError):
        return 0


def next_set(base: pathlib.Path, max_sets: int) -> tuple[pathlib.Path, int]:
    """Where the next set goes and its serial: base.1 ... base.max, then base.1 again (mosrun -N)."""
    if max_sets < 1:
        raise ValueError("max_sets must be at least 1")
    existing = sets_of(base)
    serial = (_serial_of(existing[-1]) if existing else 0) + 1
    return base.with_name(f"{base.name}.{(serial - 1) % max_sets + 1}"), serial


def staging_for(final: pathlib.Path) -> pathlib.Path:
    """A fresh root-only directory beside `final` to write the set into."""
    tmp = final.with_name(f".{final.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    return secure_dir(tmp)


def publish(staging: pathlib.Path, final: pathlib.Path, meta: Meta) -> None:
    """Write meta.json, lock the images down to root, and move the set into place (replacing)."""
    fd = os.open(staging / META, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(meta.to_json())
    images = staging / IMAGES
    if images.is_dir():
        images.chmod(0o700)
        for p in images.iterdir():
            if p.is_file():
                p.chmod(0o600)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old)
    else:
        os.rename(staging, final)


def copy_tree(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Copy a writable layer exactly (owners, modes, xattrs, overlay whiteouts): `cp -a`."""
    proc = subprocess.run(["cp", "-a", "--", str(src), str(dst)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errors.AgentError(f"copying {src} to {dst} failed: {proc.stderr.strip()}")


def take_tree(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Move a writable layer (a rename on one filesystem; a copy and delete across two)."""
    try:
        os.rename(src, dst)
    except OSError:
        copy_tree(src, dst)
        shutil.rmtree(src, ignore_errors=True)


def size_of(path: pathlib.Path) -> int:
    """Bytes in a set (for status and metrics)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total
