"""The job as the agent sees it: what to run, and the state of the container running it."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass(frozen=True)
class Job:
    """One containerized process: the parts of a MosixJob spec the agent needs to run it."""

    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    image: str = "mosix/testload:local"
    memory_mb: int | None = None
    private_dirs: tuple[str, ...] = ()
    checkpoint_base: str | None = None  # mosrun -C: sets are base.1, base.2, ... (default: the agent's)
    max_sets: int = 10  # mosrun -N: recycle after this many
    checkpoint_every: float | None = None  # mosrun -A, in seconds (-A is minutes)
    host_time: bool = False  # mosrun -t: the hosting node's clocks, not a time namespace of its own
    stdin: bool = False  # mosrun -i: fed from the input kept at home; otherwise stdin is empty (EOF)
    workdir: str | None = None  # the working directory on the home node, at the same path in the container
    home_url: str | None = None  # the home agent's API (https://HOST:PORT); None: wherever it first runs
    workdir_mode: int = 0o40755  # st_mode of the working directory at home (CRIU checks it on restore)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name) or self.name[0] == ".":
            raise ValueError(f"job name {self.name!r}: use letters, digits, '-', '_' and '.', not first '.'")
        if not self.args:
            raise ValueError("a job needs a command")
        if not self.cwd.startswith("/"):
            raise ValueError(f"cwd {self.cwd!r} must be absolute")
        if self.memory_mb is not None and self.memory_mb < 1:
            raise ValueError("memory_mb must be at least 1")
        if self.checkpoint_base is not None and not self.checkpoint_base.startswith("/"):
            raise ValueError(f"checkpoint base {self.checkpoint_base!r} must be absolute")
        if self.max_sets < 1:
            raise ValueError("max_sets must be at least 1")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ValueError("checkpoint_every must be positive")
        if self.workdir is not None and (not self.workdir.startswith("/") or ".." in self.workdir.split("/")):
            raise ValueError(f"workdir {self.workdir!r} must be an absolute path without '..'")
        if self.home_url is not None and not self.home_url.startswith("https://"):
            raise ValueError(f"home_url {self.home_url!r} must be an https:// agent URL")
        for d in self.private_dirs:
            if not d.startswith("/") or ".." in d.split("/"):
                raise ValueError(f"private dir {d!r} must be an absolute path without '..'")

    def environment(self) -> list[str]:
        """KEY=VALUE strings, with a default PATH unless the job sets one."""
        env = dict(self.env)
        env.setdefault("PATH", DEFAULT_PATH)
        return [f"{k}={v}" for k, v in env.items()]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, kept with the job's state and inside every checkpoint set."""
        return {"name": self.name, "args": list(self.args), "env": dict(self.env), "cwd": self.cwd,
                "image": self.image, "memory_mb": self.memory_mb, "private_dirs": list(self.private_dirs),
                "checkpoint_base": self.checkpoint_base, "max_sets": self.max_sets,
                "checkpoint_every": self.checkpoint_every, "host_time": self.host_time,
                "stdin": self.stdin, "workdir": self.workdir, "home_url": self.home_url,
                "workdir_mode": self.workdir_mode}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        """Read back `to_dict`'s form (from disk or from a peer agent)."""
        return cls(name=str(d["name"]), args=tuple(str(a) for a in d["args"]),
                   env=tuple((str(k), str(v)) for k, v in dict(d.get("env", {})).items()),
                   cwd=str(d.get("cwd", "/")), image=str(d.get("image", "mosix/testload:local")),
                   memory_mb=None if d.get("memory_mb") is None else int(d["memory_mb"]),
                   private_dirs=tuple(str(p) for p in d.get("private_dirs", [])),
                   checkpoint_base=None if d.get("checkpoint_base") is None else str(d["checkpoint_base"]),
                   max_sets=int(d.get("max_sets", 10)),
                   checkpoint_every=None if d.get("checkpoint_every") is None else float(d["checkpoint_every"]),
                   host_time=bool(d.get("host_time", False)),
                   stdin=bool(d.get("stdin", False)),
                   workdir=None if d.get("workdir") is None else str(d["workdir"]),
                   home_url=None if d.get("home_url") is None else str(d["home_url"]),
                   workdir_mode=int(d.get("workdir_mode", 0o40755)))



class State(enum.StrEnum):
    """Where a job's container is in its life on this agent."""

    RUNNING = "Running"
    EXITED = "Exited"  # the process ended by itself (or was killed); exit_code says how
    FROZEN = "Frozen"  # memory image on disk, process gone; freeze_reason says why
    STOPPED = "Stopped"  # checkpointed and stopped (checkstop, or migrated away)


@dataclasses.dataclass
class Status:
    """What `status` reports about one job on this agent."""

    name: str
    state: State
    pid: int | None = None
    exit_code: int | None = None  # like a shell's $?: 128+N when killed by signal N
    freeze_reason: str | None = None
    checkpoints: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the agent API."""
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        return d
