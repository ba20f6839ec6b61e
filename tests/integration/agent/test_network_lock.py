"""CRIU's network lock is skipped (runc.NO_NETWORK_LOCK): a job's namespace has no link out, and runc
restores it as a new one, so locking it only cost each dump and restore an iptables-restore or two."""

from __future__ import annotations

import collections.abc
import contextlib
import os
import pathlib
import shutil

import pytest

from mosix.agent import containers, jobs, runc

WaitLines = collections.abc.Callable[[pathlib.Path, int], list[str]]

COUNT = ("sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")


@pytest.fixture
def iptables_calls(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A file where every iptables-restore that CRIU runs (to lock or unlock a namespace) leaves a line."""
    real = shutil.which("iptables-restore")
    assert real is not None
    calls = tmp_path / "iptables-calls"
    calls.touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "iptables-restore"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return calls


@pytest.mark.root
def test_dump_and_restore_go_without_the_network_lock(agent: containers.Manager, wait_lines: WaitLines,
                                                      tmp_path: pathlib.Path, iptables_calls: pathlib.Path) -> None:
    agent.run(jobs.Job(name="open", args=COUNT))
    out = agent.stdout_path("open")
    wait_lines(out, 3)
    rt = agent.runtime
    default = tmp_path / "default"
    default.mkdir()
    (default / "empty.conf").write_text("")  # CRIU's defaults: the iptables lock
    rt.checkpoint("open", default / "images", default, leave_running=True, criu_config=default / "empty.conf")
    assert iptables_calls.read_text(), "CRIU's default dump locks and unlocks with iptables-restore"
    iptables_calls.write_text("")

    ours = tmp_path / "ours"
    (ours / "restore").mkdir(parents=True)
    rt.checkpoint("open", ours / "images", ours, leave_running=True)
    assert f"Parsing config file {ours / 'criu.conf'}" in (ours / "dump.log").read_text()
    # restored beside the job (it runs on), under a runc root of its own, as a migration's target does
    other = runc.Runtime(tmp_path / "other-root")
    r, w = os.pipe()
    try:
        other.restore("open", agent.state_dir / "jobs" / "open" / "bundle", ours / "images", ours / "restore",
                      runc.Stdio(stdout=w, stderr=w))
        os.close(w)
        w = -1
        assert other.state("open").status == "running"
        assert b"\n" in os.read(r, 4096)  # it counts on, its output on our pipe now
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        with contextlib.suppress(runc.RuncError):
            other.delete("open", force=True)
    assert iptables_calls.read_text() == ""  # neither our dump nor the restore locked the network
