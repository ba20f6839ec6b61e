"""Paths a peer names are relative to a job's exported directory and must stay inside it."""

from __future__ import annotations

import errno
import pathlib


class Escape(PermissionError):
    """The path leaves the job's directory (by '..', an absolute path, or a symlink pointing out)."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.EACCES, f"path {rel!r} leaves the job's working directory")


def parts(rel: str) -> list[str]:
    """The components of a relative path; Escape for absolute paths, '..' and NUL bytes."""
    if "\0" in rel or rel.startswith("/"):
        raise Escape(rel)
    out = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in out:
        raise Escape(rel)
    return out


def resolve(root: pathlib.Path, rel: str, *, follow: bool) -> pathlib.Path:
    """The real path `rel` names under `root`, checked to be inside it.

    Symlinks in the directories on the way are followed and must stay inside; the last component
    is followed too when `follow` (open, stat), and left as it is otherwise (lstat, unlink, rename),
    so a symlink itself can be removed but never used to reach outside.
    """
    real_root = root.resolve(strict=True)
    names = parts(rel)
    if not names:
        return real_root
    parent = real_root.joinpath(*names[:-1]).resolve()
    if not parent.is_relative_to(real_root):
        raise Escape(rel)
    target = parent / names[-1]
    if follow:
        target = target.resolve()
        if not target.is_relative_to(real_root):
            raise Escape(rel)
    return target
