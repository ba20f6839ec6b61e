"""The OCI runtime config (config.json) for a job container, built in Python from runc's defaults.

The same job must always give the same mounts: CRIU restores only into a container whose mount
tree matches the one it dumped, so every agent builds the config with this one function.
"""

from __future__ import annotations

import pathlib
from typing import Any

from mosix.agent import jobs, procfiles

# runc spec's defaults: no capabilities beyond these three, no new privileges.
DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
]


def cgroup_path(node: str, job_name: str) -> str:
    """An absolute cgroup path outside any pod's, so job containers outlive an agent restart."""
    return f"/mosix/{node}/{job_name}"


def config(job: jobs.Job, rootfs: pathlib.Path, cgroups_path: str,
           workdir_source: pathlib.Path | None = None, mosix_dir: pathlib.Path | None = None) -> dict[str, Any]:
    """The config.json for `job` with `rootfs` (the overlay mount) as its root; `workdir_source` (the real
    directory at home, the FUSE mount elsewhere) is bound at job.workdir, which is then the process's cwd; and
    `mosix_dir` (the job's procfiles directory on this agent) bind-mounted at /run/mosix: runc checkpoints a
    bind mount as an external mount and restores it onto whatever source the target's config names."""
    caps = list(DEFAULT_CAPABILITIES)
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if job.memory_mb is not None:
        resources["memory"] = {"limit": job.memory_mb * 1024 * 1024}
    workdir: list[dict[str, Any]] = []
    if workdir_source is not None and job.workdir:
        workdir = [{"destination": job.workdir, "type": "bind", "source": str(workdir_source),
                    "options": ["bind", "rw"]}]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(job.args),
            "env": job.environment(),
            "cwd": job.workdir if workdir_source is not None and job.workdir else job.cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": job.name[:63],
        "mounts": [dict(m) for m in MOUNTS] + workdir + ([] if mosix_dir is None else [
            {"destination": procfiles.MOUNT_POINT, "type": "bind", "source": str(mosix_dir),
             "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]}]),
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
