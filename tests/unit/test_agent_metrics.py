"""The agent's metrics carry the names and labels the chart's dashboard and alerts query."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import socket
import ssl
import subprocess
from typing import Any

import aiohttp
import prometheus_client
import pytest

from mosix.agent import __main__ as agent_main
from mosix.agent import errors, metrics, migration, postcopy, runc, unsupported
from mosix.api import job, node

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "charts" / "mosix" / "dashboards" / "mosix.json"


def sample(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def test_node_and_job_metrics_are_published() -> None:
    status = node.MosixNodeStatus(load=1.5, frozen=2, procs=3, speed=1000, read_kbps=4.0,
                                  memory=node.Memory(available_mb=100, total_mb=200),
                                  boot_time="2026-12-02T00:00:00+00:00")
    metrics.node_status("mnode7", status, interval=2.0)
    cpu, rss = metrics.job_usage([os.getpid()])
    assert cpu > 0 and rss > 0
    metrics.job("ns", "1001", cpu, rss, io=(100, 20), migrations=3)
    metrics.job("ns", "1001", cpu, rss, io=(5, 0), migrations=4)
    text = prometheus_client.generate_latest().decode()
    assert 'mosix_node_load{node="mnode7"} 1.5' in text
    assert 'mosix_node_memory_total_bytes{node="mnode7"} 2.097152e+08' in text
    assert 'mosix_node_read_bytes_total{node="mnode7"} 8192.0' in text
    assert 'mosix_job_rss_bytes{mosixjob="1001",namespace="ns"}' in text
    assert sample("mosix_job_cpu_seconds", namespace="ns", mosixjob="1001") == cpu  # a gauge: no _total
    assert "mosix_job_cpu_seconds_total" not in text
    assert sample("mosix_job_read_bytes_total", namespace="ns", mosixjob="1001") == 105
    assert sample("mosix_job_write_bytes_total", namespace="ns", mosixjob="1001") == 20
    assert sample("mosix_job_migrations", namespace="ns", mosixjob="1001") == 4
    metrics.forget_job("ns", "1001")
    assert 'mosixjob="1001"' not in prometheus_client.generate_latest().decode()


def _fake_process(proc: pathlib.Path, pid: int, start: int, rchar: int, wchar: int) -> None:
    d = proc / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    fields = ["S", *["0"] * 18, str(start)]  # the start time is field 22 of stat: the 20th after "(comm)"
    (d / "stat").write_text(f"{pid} (sh) {' '.join(fields)} 0 0\n")
    (d / "io").write_text(f"rchar: {rchar}\nwchar: {wchar}\nsyscr: 1\nsyscw: 1\n"
                          "read_bytes: 0\nwrite_bytes: 0\ncancelled_write_bytes: 0\n")


def test_job_io_counts_what_its_processes_did_since_it_was_first_seen(tmp_path: pathlib.Path) -> None:
    proc = tmp_path / "proc"
    _fake_process(proc, 10, start=500, rchar=7000, wchar=3000)  # e.g. restored: its counters are not the job's
    assert metrics.job_io("ns", "io1", [10], proc) == (0, 0)
    _fake_process(proc, 10, start=500, rchar=7100, wchar=3050)
    _fake_process(proc, 11, start=600, rchar=40, wchar=4)  # born since: all of it counts
    assert metrics.job_io("ns", "io1", [10, 11], proc) == (140, 54)
    _fake_process(proc, 11, start=700, rchar=8, wchar=1)  # its pid reused by a new process
    assert metrics.job_io("ns", "io1", [10, 11, 12], proc) == (8, 1)  # 12: gone already
    metrics.forget_job("ns", "io1")
    assert metrics.job_io("ns", "io1", [10, 11], proc) == (0, 0)  # a baseline again


def test_job_io_is_read_and_written_by_system_calls(tmp_path: pathlib.Path) -> None:
    """rchar/wchar: a file read from the page cache counts (read_bytes would say 0), and so do pipes."""
    data = tmp_path / "data"
    data.write_bytes(b"x" * 300_000)
    child = subprocess.Popen(["sh", "-c", f"read go; cat {data} >/dev/null; echo done >&2; read end"],
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin is not None and child.stderr is not None
    try:
        assert metrics.job_io("ns", "io2", [child.pid]) == (0, 0)
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stderr.readline() == b"done\n"
        read, written = metrics.job_io("ns", "io2", [child.pid])
        assert read >= 3 and written >= 5  # the shell: "go\n" read from its pipe, "done\n" written
        # cat, born and gone between the samples, is not seen: what its shell read and wrote is
    finally:
        child.kill()
        child.wait()
        metrics.forget_job("ns", "io2")


def test_job_io_counts_a_file_read_from_the_page_cache(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"x" * 1_000_000)
    data.read_bytes()  # in the page cache now: read_bytes of /proc/PID/io would not move
    me = os.getpid()
    metrics.job_io("ns", "io4", [me])
    data.read_bytes()
    read, _ = metrics.job_io("ns", "io4", [me])
    metrics.forget_job("ns", "io4")
    assert read >= 1_000_000


# --- migration failures by cause -------------------------------------------------------------------------

PEER = "https://127.0.0.3:9340"


def _from(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    if isinstance(inner, runc.RuncError):
        inner.__cause__ = inner  # as unsupported.classify leaves it (`raise classify(e) from e`): a loop
    return outer


def _refused_connection() -> BaseException:
    """What aiohttp raises for a peer that is not listening (a real one)."""

    async def connect() -> BaseException:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            async with aiohttp.ClientSession() as session:
                try:
                    await session.get(f"http://127.0.0.1:{port}/")
                except aiohttp.ClientError as e:
                    return e
        raise AssertionError("connected")

    return asyncio.run(connect())


def test_failure_cause_names_what_failed() -> None:
    """Each error as migration.py and postcopy.py raise it: its cause is one of a small closed set."""
    mf = migration.MigrationFailed
    cases: list[tuple[BaseException, str]] = [
        (_from(mf(f"migration of j to {PEER} failed before the dump: x"), _refused_connection()), "peer-unreachable"),
        (_from(mf(f"migration of j to {PEER} failed: x"), _refused_connection()), "peer-unreachable"),
        (mf(f"{PEER} refused j: 409 job j exists"), "refused"),
        (mf(f"{PEER} refused a page server for j: 500 no room"), "refused"),
        (_from(mf(f"migration of j to {PEER} failed: x"),
               ssl.SSLCertVerificationError("certificate verify failed")), "refused"),
        (mf(f"{PEER} refused j: 500 runc restore failed"), "restore"),
        (_from(mf(f"post-copy of j to {PEER} failed: x"), mf(f"{PEER} refused j: 500 restore failed")), "restore"),
        (_from(mf(f"migration of j to {PEER} failed: x"), aiohttp.ServerDisconnectedError()), "transfer"),
        (_from(mf(f"migration of j to {PEER} failed: x"), aiohttp.ClientPayloadError("cut")), "transfer"),
        (_from(mf(f"migration of j to {PEER} failed: x"), ConnectionResetError(104, "reset")), "transfer"),
        (_from(mf(f"migration of j: the dump into {PEER}'s page server failed, the job runs on: x"),
               mf("the page stream to the peer's page server failed: cut")), "transfer"),
        (mf(f"post-copy of j to {PEER}: the page stream broke; the job runs on the source"), "transfer"),
        (_from(mf(f"migration of j: the dump into {PEER}'s page server failed, the job runs on: x"),
               runc.Refused(["checkpoint", "--page-server", "127.0.0.2:1"], 1, "criu failed\n"
                            "(00.124428) page-xfer: Disconnect from the page server\n"
                            "(00.124838) Error (criu/cr-dump.c:2111): Dumping FAILED.")), "dump"),
        (_from(mf(f"migration of j: the dump into {PEER}'s page server failed, the job runs on: x"),
               runc.Refused(["checkpoint", "--page-server", "127.0.0.2:1"], 1, "criu failed\n"
                            "(00.124435) Error (criu/page-xfer.c:150): page-xfer: Can't send PSI 4131 to server: "
                            "Broken pipe\n(00.124838) Error (criu/cr-dump.c:2111): Dumping FAILED.")), "transfer"),
        (_from(mf("post-copy of j: the lazy dump failed, the job runs on: x"),
               errors.CheckpointError("criu lazy-pages did not start")), "dump"),
        (_from(mf(f"migration of j to {PEER} failed: x"), TimeoutError()), "timeout"),
        (_from(mf(f"migration of j to {PEER} failed: x"), aiohttp.ConnectionTimeoutError()), "timeout"),
        (mf("job j is locked to node1 (its /run/mosix/lock is 1): not migrating"), "locked"),
        (unsupported.Unsupported("fd 3 is [perf_event]"), "unsupported"),
        (mf("something new"), "other"),
        (_from(postcopy.PostCopyFailed("?"), ValueError("?")), "other"),
    ]
    for e, cause in cases:
        assert metrics.failure_cause(e) == cause, (e, e.__cause__)
        assert cause in metrics.CAUSES


class _Api:
    class store:
        namespace = "default"

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch_job_status(self, key: str, fields: dict[str, Any]) -> None:
        self.patches.append(fields)


class _Manager:
    class _St:
        pid = 0

    def status(self, name: str) -> Any:
        return self._St()


class _Loop:
    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run(coro)


def _job(name: str, migrations: int) -> tuple[job.MosixJob, node.MosixNode]:
    j = job.MosixJob.model_validate({"metadata": {"name": name, "namespace": "default"},
                                     "spec": {"command": ["sleep", "1"]}, "status": {"migrations": migrations}})
    target = node.MosixNode.model_validate({"metadata": {"name": "node3"},
                                            "spec": {"number": 3, "address": "127.0.0.3", "agentPort": 9340}})
    return j, target


def test_migrations_are_counted_by_reason_and_failures_by_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[BaseException | migration.Result] = [
        migration.MigrationFailed(f"{PEER} refused j: 500 runc restore failed"),
        _from(migration.MigrationFailed(f"migration of j to {PEER} failed: x"), aiohttp.ServerDisconnectedError()),
        migration.Result(peer_status={"pid": 7}, frozen_seconds=0.1, bytes_sent=1000),
        unsupported.Unsupported("fd 3 is [perf_event]"),
    ]

    async def migrate(*args: Any, **kwargs: Any) -> migration.Result:
        out = outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    monkeypatch.setattr(migration, "migrate", migrate)
    api = _Api()
    move = agent_main.migrator(api, _Manager(), _Loop(), ssl.create_default_context(),  # type: ignore[arg-type]
                               "mnode2", postcopy_above_mb=1 << 20)
    j, target = _job("m1", migrations=2)

    def failures(cause: str) -> float:
        return sample("mosix_migration_failures_total", reason="Policy", cause=cause, node="mnode2") or 0.0

    before = {c: failures(c) for c in metrics.CAUSES}
    moved = sample("mosix_migrations_total", reason="Policy", node="mnode2") or 0.0
    metrics.job("default", "m1", 1.0, 100, io=(0, 0), migrations=2)  # as the agent published it while it ran here
    metrics.CHECKPOINT_BYTES.labels("default", "m1").set(5000)
    move("default/m1", j, target)
    move("default/m1", j, target)
    assert failures("restore") == before["restore"] + 1
    assert failures("transfer") == before["transfer"] + 1
    assert sample("mosix_job_migrations", namespace="default", mosixjob="m1") == 2  # still here
    move("default/m1", j, target)
    assert sample("mosix_migrations_total", reason="Policy", node="mnode2") == moved + 1
    assert api.patches[-1]["migrations"] == 3 and api.patches[-1]["node"] == "node3"
    # it runs on node3 now: node3's agent publishes it, this one no longer does; its set written here stays
    assert [line for line in prometheus_client.generate_latest().decode().splitlines() if 'mosixjob="m1"' in line] \
        == ['mosix_checkpoint_bytes{mosixjob="m1",namespace="default"} 5000.0']
    metrics.forget_job("default", "m1")
    with pytest.raises(unsupported.Unsupported):
        move("default/m1", j, target)
    assert failures("unsupported") == before["unsupported"] + 1


def test_every_metric_the_dashboard_uses_is_exported() -> None:
    from mosix.controller import metrics as control  # registers the control plane's metrics too

    assert control.DECISION is not None
    used = set(re.findall(r"\bmosix_[a-z_]+", DASHBOARD.read_text()))
    parts = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("",)}
    exported = {m.name + suffix for m in prometheus_client.REGISTRY.collect() for suffix in parts.get(m.type, ("",))}
    assert sorted(used - exported) == []
