"""The keeper (mosix.agent.keeper) and its fd-store protocol, with real pipes, sockets and processes."""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from mosix.agent import fdstore, keeper


@pytest.fixture
def store() -> Iterator[fdstore.FdStore]:
    """An FdStore talking to a keeper's Store over a real SOCK_SEQPACKET pair, served in a thread."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    held = keeper.Store()

    def serve() -> None:
        while True:
            select.select([theirs], [], [])
            if not keeper.serve_requests(theirs, held):
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield fdstore.FdStore(mine)
    mine.close()
    thread.join(5)
    for key in list(held.held):
        held.drop(key)
    theirs.close()


def test_a_pipe_put_in_the_store_keeps_a_holder_and_comes_back(store: fdstore.FdStore) -> None:
    r, w = os.pipe()
    store.put("job", {"stdout": r})
    os.close(r)  # the agent's own copy is gone (it died): the writer must not get EPIPE
    os.write(w, b"kept\n")
    assert store.keys() == ["job"]
    back = store.get("job")
    assert list(back) == ["stdout"]
    assert os.read(back["stdout"], 100) == b"kept\n"
    os.close(back["stdout"])
    store.drop("job")
    assert store.keys() == []
    with pytest.raises(BrokenPipeError):  # no reader left anywhere
        os.write(w, b"x")
    os.close(w)


def test_put_replaces_and_close_lets_go_of_one_end(store: fdstore.FdStore) -> None:
    r, w = os.pipe()
    store.put("job", {"stdin": w, "stdin_r": r})
    store.put("job", {"stdin": w})  # replaced: the keeper's old dups are closed
    back = store.get("job")
    assert list(back) == ["stdin"]
    os.close(back["stdin"])
    store.close("job", "stdin")
    assert store.get("job") == {}
    os.close(w)  # now no writer is left: the reader sees EOF
    assert os.read(r, 10) == b""
    os.close(r)


def test_bad_requests_are_refused_and_their_fds_closed(store: fdstore.FdStore) -> None:
    r, w = os.pipe()
    with pytest.raises(fdstore.KeeperError, match="fds for names"):
        store._call({"op": "put", "key": "job", "names": ["a", "b"]}, [r])
    with pytest.raises(fdstore.KeeperError, match="unknown op"):
        store._call({"op": "steal", "key": "job"})
    with pytest.raises(fdstore.KeeperError, match="no key"):
        store._call({"op": "get"})
    assert store.keys() == []
    os.close(r)
    with pytest.raises(BrokenPipeError):  # the refused put kept no dup of the read end
        os.write(w, b"x")
    os.close(w)


AGENT = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    from mosix.agent import fdstore
    out = pathlib.Path(sys.argv[1])
    store = fdstore.FdStore.from_environment()
    assert store is not None
    if not (out / "first").exists():
        (out / "first").touch()
        r, w = os.pipe()
        store.put("job", {"stdout": r})
        os.close(r)
        if os.fork() == 0:  # an orphan-to-be that outlives this agent, as a container does
            if os.fork() == 0:
                (out / "orphan").write_text(str(os.getpid()))
                os.write(w, b"from the orphan\\n")
                time.sleep(3)  # it ends while the next agent runs: the keeper must reap it then
                os._exit(7)
            os._exit(0)
        os.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    back = store.get("job")
    data = os.read(back["stdout"], 100)
    store.drop("job")
    (out / "second").write_bytes(data)
    orphan = int((out / "orphan").read_text())
    deadline = time.monotonic() + 30
    while (code := fdstore.read_exit(pathlib.Path(sys.argv[2]), orphan)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    (out / "code").write_text(str(code))
    sys.exit(int(os.environ.get("SECOND_EXIT", "0")))
""")



def run_keeper(tmp_path: pathlib.Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    return subprocess.run([sys.executable, "-m", "mosix.agent.keeper", "--state-dir", str(tmp_path / "state"),
                           "--", sys.executable, str(script), str(tmp_path), str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}, check=False)


def test_the_keeper_restarts_a_killed_agent_which_gets_its_pipes_back_and_the_orphans_exit(
        tmp_path: pathlib.Path) -> None:
    done = run_keeper(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "starting it again" in done.stderr
    assert (tmp_path / "second").read_bytes() == b"from the orphan\n"
    assert (tmp_path / "code").read_text() == "7"  # recorded while the agent ran, which read it
    exits = keeper.exits_dir(tmp_path / "state")
    records = [json.loads(p.read_text()) for p in exits.iterdir()]
    assert [r["code"] for r in records] == [7]
    assert fdstore.read_exit(tmp_path / "state", records[0]["pid"]) == 7
    assert oct(exits.stat().st_mode & 0o777) == "0o700"
    assert oct((exits / str(records[0]["pid"])).stat().st_mode & 0o777) == "0o600"
    fdstore.forget_exits(tmp_path / "state", keep=set())
    assert list(exits.iterdir()) == []


def test_the_keeper_ends_with_an_agent_that_stops_or_cannot_run(tmp_path: pathlib.Path) -> None:
    done = run_keeper(tmp_path, {"SECOND_EXIT": "2"})  # a usage error: starting again would not help
    assert done.returncode == 2
    assert done.stderr.count("starting it again") == 1  # only after the SIGKILL of the first life


def test_sigterm_stops_the_agent_and_then_the_keeper(tmp_path: pathlib.Path) -> None:
    ready = tmp_path / "ready"
    script = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-m", "mosix.agent.keeper", "--state-dir", str(tmp_path / "state"),
                             "--", sys.executable, "-c", script])
    try:
        for _ in range(600):
            if ready.exists():
                break
            threading.Event().wait(0.05)
        assert ready.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM  # the agent's own end, passed on; no restart
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_keeper_needs_a_command(tmp_path: pathlib.Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mosix.agent.keeper", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "after --" in done.stderr
