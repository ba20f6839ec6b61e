"""runc, typed: its command line is its API.

Two failures are kept apart: `NotRunnable` (the binary is missing or died without answering)
and `Refused` (runc ran and said no: nonzero exit, with its stderr). Every agent has its own
`--root` state directory, so agents on one machine never see each other's containers.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import pathlib
import subprocess
from typing import Any

from mosix.agent import errors

DEVNULL = subprocess.DEVNULL


class RuncError(errors.AgentError):
    """Any runc failure."""


class NotRunnable(RuncError):
    """runc could not be run at all (missing binary, exec failure, killed by a signal)."""


class Refused(RuncError):
    """runc ran and refused: a nonzero exit, with what it wrote on stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"runc {' '.join(args)} exited {returncode}: {stderr.strip()}")


@dataclasses.dataclass(frozen=True)
class State:
    """What `runc state`/`runc list` say about one container."""

    id: str
    pid: int
    status: str  # creating, created, running, paused, stopped
    bundle: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> State:
        """Read runc's JSON."""
        return cls(id=str(d["id"]), pid=int(d.get("pid", 0)), status=str(d["status"]), bundle=str(d.get("bundle", "")))


@dataclasses.dataclass(frozen=True)
class Stdio:
    """File descriptors handed to the container as its stdin, stdout and stderr (pipes, or DEVNULL)."""

    stdin: int = DEVNULL
    stdout: int = DEVNULL
    stderr: int = DEVNULL


OWN_CLOCK = ("unshare", "--time")
"""Starts runc in a new time namespace for its children, so runc init and the job are born in it:
runc 1.1 cannot put one in the container's config ("namespace time does not exist"). CRIU dumps
the clocks (timens-*.img) and restores them continuous in a new time namespace, so a migrated
job's CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from where they stopped (the home node's clock, as
MOSIX keeps it). A -t job starts on the host's clocks, and its restores drop that image
(`containers.Manager.restoring`) so it stays on the hosting node's."""


class Runtime:
    """One agent's runc: a binary and a state root."""

    def __init__(self, root: pathlib.Path, binary: str = "runc") -> None:
        self.root = root
        self.binary = binary

    def run(self, container_id: str, bundle: pathlib.Path, stdio: Stdio, own_clock: bool = False) -> int:
        """Start a container detached; its process inherits `stdio` (pipes the agent owns). Its pid.
        With `own_clock`, in a time namespace of its own (`OWN_CLOCK`); without, on the host's clocks."""
        pid_file = self._pid_file(container_id)
        self._call(["run", "--detach", "--pid-file", str(pid_file), "--bundle", str(bundle), container_id],
                   stdio=stdio, prefix=OWN_CLOCK if own_clock else ())
        return _read_pid(pid_file)

    def state(self, container_id: str) -> State:
        """The container's state; `Refused` if runc does not know it."""
        return State.from_json(json.loads(self._call(["state", container_id])))

    def knows(self, container_id: str) -> bool:
        """Whether runc keeps a record of this container under our root (its state directory),
        without running runc."""
        return (self.root / container_id).is_dir()

    def list(self) -> builtins.list[State]:
        """Every container under this root."""
        out = self._call(["list", "--format", "json"])
        return [State.from_json(d) for d in (json.loads(out) or [])]

    def kill(self, container_id: str, signal: str = "KILL", all_processes: bool = False) -> None:
        """Send a signal to the container's init (or every process in it)."""
        self._call(["kill", *(["--all"] if all_processes else []), container_id, signal])

    def delete(self, container_id: str, force: bool = False) -> None:
        """Forget a stopped container (force: kill it first)."""
        self._call(["delete", *(["--force"] if force else []), container_id])

    def pause(self, container_id: str) -> None:
        """Freeze every process in the container (cgroup freezer)."""
        self._call(["pause", container_id])

    def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        self._call(["resume", container_id])

    def checkpoint(self, container_id: str, image_path: pathlib.Path, work_path: pathlib.Path,
                   leave_running: bool = False, *, page_server: str | None = None,
                   criu_config: pathlib.Path | None = None) -> None:
        """Dump the container with CRIU into image_path; without leave_running its processes end.

        page_server (ADDRESS:PORT): the memory goes there instead of into image_path; criu_config:
        a CRIU config file (runc has no flags for CRIU's --tls options), else NO_NETWORK_LOCK's.
        """
        args = ["checkpoint", "--image-path", str(image_path), "--work-path", str(work_path)]
        if leave_running:
            args.append("--leave-running")
        if page_server is not None:
            args += ["--page-server", page_server]
        self._call([*args, container_id], log=work_path / "dump.log", env=criu_env(work_path, criu_config))

    def restore(self, container_id: str, bundle: pathlib.Path, image_path: pathlib.Path,
                work_path: pathlib.Path, stdio: Stdio) -> int:
        """Restore detached; runc re-attaches the process's stdio pipes to `stdio`. Its pid."""
        pid_file = self._pid_file(container_id)
        args = ["restore", "--detach", "--pid-file", str(pid_file), "--image-path", str(image_path),
                "--work-path", str(work_path), "--bundle", str(bundle), container_id]
        self._call(args, stdio=stdio, log=work_path / "restore.log", env=criu_env(work_path))
        return _read_pid(pid_file)

    def _call(self, args: builtins.list[str], stdio: Stdio | None = None, log: pathlib.Path | None = None,
              prefix: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
        cmd = [*prefix, self.binary, "--root", str(self.root), *args]
        head = len(prefix) + 3
        try:
            if stdio is None:
                done = subprocess.run(cmd, stdin=DEVNULL, capture_output=True, text=True, check=False, env=env)
                returncode, out, err = done.returncode, done.stdout, done.stderr
            else:
                # A detached container inherits runc's stdio, so runc's own messages are read
                # from its --log file instead of its stderr.
                # runc's stderr is the job's pipe here: the caller discards those pipes on failure.
                logfile = self._log_path(args[0], args[-1])
                launched = subprocess.run([*cmd[:head], "--log", str(logfile), *cmd[head:]], check=False,
                                          stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
                returncode, out, err = launched.returncode, "", _read_and_remove(logfile)
        except OSError as e:
            raise NotRunnable(f"{self.binary} could not run: {e}") from e
        if returncode < 0:
            raise NotRunnable(f"{self.binary} {args[0]} died of signal {-returncode}")
        if returncode != 0:
            detail = err
            if log is not None and (tail := errors.log_tail(log)):
                detail += "\n" + "\n".join(tail)
            raise Refused(args, returncode, detail)
        return out

    def _pid_file(self, container_id: str) -> pathlib.Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / f"{container_id}.pid"
        path.unlink(missing_ok=True)
        return path

    def _log_path(self, command: str, container_id: str) -> pathlib.Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root / f"{command}-{container_id}.log"


NO_NETWORK_LOCK = "network-lock skip\n"
"""CRIU's options for every dump and restore here (runc has no flag for them: a CRIU config file).
CRIU locks a container's network namespace with iptables rules while it dumps or restores it, so
that no TCP peer sees a half-dumped connection; each lock and unlock runs iptables-restore (an unlock
took 0.05-0.13 s of a freeze here). A job's namespace has no link out, its established TCP
connections are never dumped (no --tcp-established: CRIU refuses them), and runc restores it as a
new namespace (the set holds no rules of it, so none of a lock either): there is nothing to lock."""


def criu_env(work_path: pathlib.Path, config: pathlib.Path | None = None) -> dict[str, str]:
    """runc's environment, naming CRIU's config file: `config`, else one of NO_NETWORK_LOCK in work_path."""
    if config is None:
        config = work_path / "criu.conf"
        config.write_text(NO_NETWORK_LOCK)
    return {**os.environ, "CRIU_CONFIG_FILE": str(config)}


def _read_pid(path: pathlib.Path) -> int:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise NotRunnable(f"runc reported success but left no pid in {path}: {e}") from e
    path.unlink(missing_ok=True)
    return pid


def _read_and_remove(path: pathlib.Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    path.unlink(missing_ok=True)
    return text
