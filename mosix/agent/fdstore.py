"""The agent's side of the keeper (`mosix.agent.keeper`): its fd store and its records of orphans' exits.

The agent puts a dup of each job's stdio pipe ends into the keeper at start and takes them back
after a restart; the keeper keeps its own copies until the agent drops them, so a pipe always has
a holder. A keeper that is gone (or none: the agent run alone) makes every call a `KeeperError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import threading
from typing import Any

from mosix.agent import errors, keeper


class KeeperError(errors.AgentError):
    """The keeper did not answer, or refused."""


class FdStore:
    """Requests to the keeper over the socket pair it gave this agent; one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> FdStore | None:
        """The keeper's socket, if this agent was started by one (else None: the agent runs alone)."""
        fd = os.environ.pop(keeper.ENV_FD, None)
        if fd is None:
            return None
        sock = socket.socket(fileno=int(fd))
        sock.set_inheritable(False)
        return cls(sock)

    def put(self, key: str, fds: dict[str, int]) -> None:
        """Give the keeper dups of these fds for key (its old ones are closed)."""
        self._call({"op": "put", "key": key, "names": list(fds)}, list(fds.values()))

    def close(self, key: str, name: str) -> None:
        """Have the keeper close one of key's fds."""
        self._call({"op": "close", "key": key, "name": name})

    def drop(self, key: str) -> None:
        """Have the keeper close all of key's fds."""
        self._call({"op": "drop", "key": key})

    def keys(self) -> list[str]:
        """Every key the keeper holds fds for."""
        return [str(k) for k in self._call({"op": "keys"})[0]["keys"]]

    def get(self, key: str) -> dict[str, int]:
        """Dups of key's fds, by name (the caller owns them); empty if the keeper holds none."""
        reply, fds = self._call({"op": "get", "key": key})
        names = [str(n) for n in reply.get("names", [])]
        if len(names) != len(fds):
            for fd in fds:
                os.close(fd)
            raise KeeperError(f"the keeper sent {len(fds)} fds for {names}")
        return dict(zip(names, fds, strict=True))

    def close_socket(self) -> None:
        self._sock.close()

    def _call(self, message: dict[str, Any], fds: list[int] | None = None) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            try:
                if fds:
                    socket.send_fds(self._sock, [keeper.encode(message)], fds)
                else:
                    self._sock.send(keeper.encode(message))
                data, got = keeper.receive(self._sock)
            except OSError as e:
                raise KeeperError(f"the keeper did not answer: {e}") from e
        if not data:
            raise KeeperError("the keeper is gone")
        reply = keeper.decode(data)
        if not reply.get("ok"):
            for fd in got:
                os.close(fd)
            raise KeeperError(f"the keeper refused {message.get('op')}: {reply.get('error')}")
        return reply, list(got)


def read_exit(state_dir: pathlib.Path, pid: int) -> int | None:
    """The exit code the keeper recorded for pid (an orphan it reaped), or None."""
    try:
        return int(json.loads((keeper.exits_dir(state_dir) / str(pid)).read_text())["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_exits(state_dir: pathlib.Path, keep: set[int]) -> None:
    """Delete the keeper's records but those of `keep` (records are only read about jobs known at adoption)."""
    directory = keeper.exits_dir(state_dir)
    for path in directory.glob("*") if directory.is_dir() else []:
        if not (path.name.isdigit() and int(path.name) in keep):
            with contextlib.suppress(OSError):
                path.unlink()
