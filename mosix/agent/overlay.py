"""Overlay mounts: a cached image rootfs read-only below, the job's own writable layer above."""

from __future__ import annotations

import os
import pathlib
import subprocess

from mosix.agent import errors


def mount(lower: pathlib.Path, upper: pathlib.Path, work: pathlib.Path, target: pathlib.Path) -> None:
    """Mount lower+upper at target (upper and work are created if missing)."""
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errors.AgentError(f"overlay mount on {target} failed: {proc.stderr.strip()}")


def is_mounted(target: pathlib.Path) -> bool:
    """Whether something is mounted exactly at target."""
    real = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def unmount(target: pathlib.Path) -> None:
    """Unmount target if mounted (lazily if busy, so a stuck job cannot pin its layer forever)."""
    if not is_mounted(target):
        return
    proc = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        proc = subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise errors.AgentError(f"umount {target} failed: {proc.stderr.strip()}")
