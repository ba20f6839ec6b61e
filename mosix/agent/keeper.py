"""The keeper: the agent's tiny parent, which outlives any crash of the agent.

`python -m mosix.agent.keeper --state-dir DIR -- AGENT-COMMAND...` (the agent's entry point execs it).
It does three things and nothing else, so it never needs restarting:
- runs the agent as its child, and starts it again when it dies (not when it stops cleanly, exit 0,
  or on a usage error, exit 2; SIGTERM/SIGINT are passed on, and the keeper ends with the agent);
- is a child subreaper: job containers orphaned by a dead agent land here; it reaps them and records
  each exit status in DIR/keeper/exits/<pid> (root-only), where the restarted agent reads it;
- is an fd store, like systemd's: over a SOCK_SEQPACKET socket pair (inherited by the agent only,
  so only the agent can talk to it) the agent puts a dup of each job's stdio pipe ends and gets them
  back after a restart. A pipe is never without a holder, so a job writing while the agent is down
  blocks when the pipe is full: nothing is lost, nothing is killed.
Only the standard library: this process must not need the agent's dependencies.

Protocol: one JSON object per datagram, fds attached with SCM_RIGHTS; every request gets one reply
{"ok": true, ...} or {"ok": false, "error": "..."}.
    {"op": "put", "key": K, "names": [N, ...]} + fds   keep these fds (named) for K, replacing K's old ones
    {"op": "drop", "key": K}                            close K's fds
    {"op": "close", "key": K, "name": N}                close K's fd named N (a job's stdin at EOF)
    {"op": "keys"}                                      reply "keys": every K held
    {"op": "get", "key": K}                             reply "names" + dups of K's fds
"""

from __future__ import annotations

import argparse
import array
import contextlib
import ctypes
import json
import os
import pathlib
import select
import signal
import socket
import sys
import time
from typing import Any

ENV_FD = "MOSIX_KEEPER_FD"  # the agent's end of the socket pair, in the agent's environment
MAX_MESSAGE = 65536
MAX_FDS = 16  # per key: a job's stdio needs at most four
PR_SET_CHILD_SUBREAPER = 36
RESTART_DELAY = (0.5, 10.0)  # seconds before restarting a dead agent: first, and most after quick deaths
QUICK_DEATH = 10.0  # an agent that lived less than this doubles the delay


def exits_dir(state_dir: pathlib.Path) -> pathlib.Path:
    """Where the keeper records the exit status of each orphan it reaped, one file per pid."""
    return state_dir / "keeper" / "exits"


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


def receive(sock: socket.socket, flags: int = 0) -> tuple[bytes, list[int]]:
    """One datagram and the fds it carries (received close-on-exec). Not socket.recv_fds: it drops `flags`."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize),
                                         flags | socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def exit_code(status: int) -> int:
    """A wait status as a shell's $? (128+N when killed by signal N)."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


class Store:
    """The fds held, by key; `handle` answers one request."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[list[str], list[int]]] = {}

    def handle(self, message: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        """The reply to one request and the fds to send with it; takes ownership of `fds`."""
        op, key = message.get("op"), message.get("key")
        if op == "keys":
            self._close(fds)
            return {"ok": True, "keys": sorted(self.held)}, []
        if not isinstance(key, str) or not key:
            self._close(fds)
            return {"ok": False, "error": f"{op}: no key"}, []
        if op == "put":
            names = message.get("names")
            if not isinstance(names, list) or len(names) != len(fds) or len(fds) > MAX_FDS:
                self._close(fds)
                return {"ok": False, "error": f"put {key}: {len(fds)} fds for names {names!r}"}, []
            self.drop(key)
            self.held[key] = ([str(n) for n in names], fds)
            return {"ok": True}, []
        self._close(fds)
        if op == "drop":
            self.drop(key)
            return {"ok": True}, []
        if op == "close":
            names, held = self.held.get(key, ([], []))
            if message.get("name") in names:
                i = names.index(message["name"])
                os.close(held.pop(i))
                names.pop(i)
            return {"ok": True}, []
        if op == "get":
            names, held = self.held.get(key, ([], []))
            return {"ok": True, "names": names}, held
        return {"ok": False, "error": f"unknown op {op!r}"}, []

    def drop(self, key: str) -> None:
        self._close(self.held.pop(key, ([], []))[1])

    @staticmethod
    def _close(fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)


def serve_requests(sock: socket.socket, store: Store) -> bool:
    """Answer every request waiting on the agent's socket; False once the agent's end is closed."""
    while True:
        try:
            data, fds = receive(sock, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        try:
            reply, out = store.handle(decode(data), list(fds))
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            reply, out = {"ok": False, "error": f"bad request: {e}"}, []
        try:
            socket.send_fds(sock, [encode(reply)], out) if out else sock.send(encode(reply))
        except OSError:
            return False


def record_exit(directory: pathlib.Path, pid: int, status: int) -> None:
    """Write pid's exit status where the agent finds it; whole or not at all (rename)."""
    tmp = directory / f".{pid}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, encode({"pid": pid, "code": exit_code(status), "time": time.time()}))
    finally:
        os.close(fd)
    os.replace(tmp, directory / str(pid))


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _spawn(argv: list[str], fd: int) -> int:
    """Fork and exec the agent with only stdio and its end of the socket pair open."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs
        try:
            os.closerange(3, fd)
            os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
            os.set_inheritable(fd, True)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            os.execvpe(argv[0], argv, {**os.environ, ENV_FD: str(fd)})
        finally:
            os._exit(127)
    return pid


class Keeper:
    """The loop: agent's life, orphans' deaths, fd requests."""

    def __init__(self, argv: list[str], state_dir: pathlib.Path) -> None:
        self.argv = argv
        self.exits = exits_dir(state_dir)
        self.store = Store()
        self.agent: int | None = None
        self.sock: socket.socket | None = None
        self.stopping: int | None = None

    def run(self) -> int:
        _become_subreaper()
        self.exits.parent.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in (self.exits.parent, self.exits):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        delay, started, restart_at = RESTART_DELAY[0], 0.0, time.monotonic()
        while True:
            if self.agent is None and self.stopping is not None:
                return 0  # stopped between two lives of the agent
            if self.agent is None and time.monotonic() >= restart_at:
                started = time.monotonic()
                self._start()
            readable = [wake_r] + ([self.sock] if self.sock is not None else [])
            ready, _, _ = select.select(readable, [], [], 1.0)
            if wake_r in ready:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            if self.sock is not None and self.sock in ready and not serve_requests(self.sock, self.store):
                self.sock.close()
                self.sock = None
            code = self._reap()
            if code is None:
                continue
            if self.stopping is not None or code in (0, 2):
                return code
            lived = time.monotonic() - started
            delay = min(delay * 2, RESTART_DELAY[1]) if lived < QUICK_DEATH else RESTART_DELAY[0]
            restart_at = time.monotonic() + delay
            print(f"mosix-keeper: the agent ended ({code}); starting it again in {delay:.1f} s",
                  file=sys.stderr, flush=True)

    def _start(self) -> None:
        if self.sock is not None:
            self.sock.close()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.agent = _spawn(self.argv, theirs.fileno())
        finally:
            theirs.close()
        self.sock = mine

    def _reap(self) -> int | None:
        """Reap every dead child: the agent's exit code if it was among them."""
        agent_code = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return agent_code
            if pid == 0:
                return agent_code
            if pid == self.agent:
                self.agent = None
                agent_code = exit_code(status)
            else:
                try:
                    record_exit(self.exits, pid, status)
                except OSError as e:
                    print(f"mosix-keeper: cannot record the exit of {pid}: {e}", file=sys.stderr, flush=True)

    def _stop(self, sig: int, _frame: object) -> None:
        self.stopping = sig
        if self.agent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.agent, sig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mosix-keeper",
                                description="Keeps the node agent running and its jobs' pipes open.")
    p.add_argument("--state-dir", type=pathlib.Path, required=True, help="the agent's state directory")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the agent's command line")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("the agent's command line is missing (after --)")
    return Keeper(command, args.state_dir).run()


if __name__ == "__main__":
    sys.exit(main())
