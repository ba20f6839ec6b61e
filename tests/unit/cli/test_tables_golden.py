"""mosps, mosq listall, mosctl status and setpe print the tutorial's tables, from a real local store."""

from __future__ import annotations

import datetime
import getpass
import json

import pytest
import yaml

from mosix.api import cluster, job, node
from mosix.cli import migrate, mosctl, mosps, mosq, setpe
from mosix.client import client
from tests.unit.cli.conftest import submit


def _spec(*command: str, **fields: object) -> job.MosixJobSpec:
    return job.MosixJobSpec.model_validate({"command": list(command), "user": "llor"} | fields)


@pytest.fixture
def tutorial_jobs(api: client.Client) -> client.Client:
    submit(
        api,
        "24078",
        "mosrun -b testload",
        _spec("testload", placement="Best"),
        {"phase": "Running", "node": "cmos-18", "homeNode": "mos1", "migrations": 1},
    )
    submit(
        api,
        "24081",
        "mosrun -b testload",
        _spec("testload", placement="Best"),
        {"phase": "Running", "node": "mos1", "homeNode": "mos1"},
    )
    submit(
        api,
        "30115",
        "mosrun testload",
        _spec("testload"),
        {"phase": "Frozen", "node": "mos1", "homeNode": "mos1", "frozen": "Manual"},
    )
    submit(api, "30145", "mosqueue -b testload", _spec("testload", placement="Best", queue={}))
    submit(
        api,
        "30253",
        "/sbin/remote",
        _spec("remote"),
        {"phase": "Running", "node": "mos1", "homeNode": "mos3", "migratable": False},
    )
    return api


def test_mosps_AMn_reads_like_the_tutorial(tutorial_jobs: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-AMn"]) == 0
    assert capsys.readouterr().out == (
        "PID    WHERE    FROM  CLASS  FRZ  NMIGS  TTY  CMD\n"
        "24078  cmos-18  here  local  -    1      ?    mosrun -b testload\n"
        "24081  here     here  local  -    0      ?    mosrun -b testload\n"
        "30115  here     here  local  M    0      ?    mosrun testload\n"
        "30145  queue    here  N/A    N/A  N/A    ?    mosqueue -b testload\n"
        "30253  here     mos3  local  N/A  0      ?    /sbin/remote\n"
    )


def test_mosps_filters(tutorial_jobs: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-A", "-O", "-I"]) == 0
    assert capsys.readouterr().out == (
        "PID    WHERE          FROM  CLASS  FRZ  TTY  CMD\n"
        "24078  132.65.174.18  here  local  -    ?    mosrun -b testload\n"
    )
    assert mosps.main(["-AV"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["PID", "30253"]
    assert mosps.main(["-A", "-J7"]) == 0
    assert capsys.readouterr().out.splitlines() == ["PID  WHERE  FROM  CLASS  FRZ  TTY  CMD"]
    assert mosps.main([]) == 0  # only this user's: the jobs belong to llor
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_mosps_selects_users_and_processes_as_ps_does(tutorial_jobs: client.Client,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def pids(*argv: str) -> list[str]:
        assert mosps.main(list(argv)) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]

    everyone = ["24078", "24081", "30115", "30145", "30253"]
    assert pids("-u", "llor") == everyone  # another user's, named: no -A needed
    assert pids("-ullor,ann") == everyone
    assert pids("-u", "ann") == []
    assert pids("-p", "30115,24081") == ["24081", "30115"]
    assert pids("-Mnp24078") == ["24078"]
    assert pids("-p", "24078", "-u", "ann") == []


def test_mosps_json_is_the_objects(tutorial_jobs: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-A", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["24078", "24081", "30115", "30145", "30253"]


def test_mosq_listall_and_cngpri_as_in_the_tutorial(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    submit(
        api,
        "21666",
        "mosrun -b testload",
        _spec("testload", placement="Best", queue={}),
        {"phase": "Running", "node": "mos1", "homeNode": "mos1"},
    )
    submit(api, "21667", "mosrun -b testload", _spec("testload", placement="Best", queue={}))
    submit(api, "21155", "mosrun testload", _spec("testload", queue={}, homeNode="cmos-17"))
    header = "PID    USER  MEM(MB)  GRID  PRI  FROM     COMMAND\n"
    assert mosq.main(["listall"]) == 0
    assert capsys.readouterr().out == header + (
        "21666  llor  -        NO    RUN  here     mosrun -b testload\n"
        "21667  llor  -        NO    50   here     mosrun -b testload\n"
        "21155  llor  -        NO    50   cmos-17  mosrun testload\n"
    )
    assert mosq.main(["cngpri", "20", "21155"]) == 0
    assert mosq.main(["listall"]) == 0
    assert capsys.readouterr().out == header + (
        "21666  llor  -        NO    RUN  here     mosrun -b testload\n"
        "21155  llor  -        NO    20   cmos-17  mosrun testload\n"
        "21667  llor  -        NO    50   here     mosrun -b testload\n"
    )
    assert mosq.main(["list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["PID", "21155", "21667"]


def test_mosq_advance_retard_run_delete(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("101", "102", "103"):
        submit(api, name, f"mosrun job{name}", _spec(f"job{name}", queue={}))
    submit(api, "104", "mosrun -q70 job104", _spec("job104", queue={"priority": 70}))

    def order() -> list[str]:
        assert mosq.main(["list"]) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]

    assert order() == ["101", "102", "103", "104"]
    assert mosq.main(["advance", "103"]) == 0
    assert order() == ["103", "101", "102", "104"]
    assert mosq.main(["retard", "103"]) == 0
    assert order() == ["101", "102", "103", "104"]
    assert mosq.main(["retard", "104"]) == 0  # alone in its priority group: stays last
    assert order() == ["101", "102", "103", "104"]
    assert mosq.main(["run", "102"]) == 0
    assert api.get_job("102").spec.queue is not None and api.get_job("102").spec.queue.run_now  # type: ignore[union-attr]
    assert mosq.main(["delete", "101"]) == 0
    assert order() == ["102", "103", "104"]
    api.patch_job_status("103", {"phase": "Running"})
    assert mosq.main(["delete", "103"]) == 1
    assert "not waiting in the queue" in capsys.readouterr().err


def _report(api: client.Client, name: str, **status: object) -> None:
    beat = datetime.datetime.now(datetime.UTC).isoformat()
    api.store.patch(node.MosixNode, name, {"status": {"heartbeat": beat, **status}}, status=True)


def test_mosctl_status_and_localstatus(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    _report(
        api,
        "mos1",
        state="Running Normally",
        load=0.29,
        speed=10012,
        cpus=1,
        util=100,
        avail=True,
        procs=1,
        accept=True,
        memory={"availableMb": 903, "totalMb": 1010},
        swap={"availableMb": 819, "totalMb": 921},
        daemons={"master": "Up", "mosix": "Up", "queue": "Up", "remote": "Up"},
        guests={"running": 0, "max": 10},
    )
    assert mosctl.main(["status"]) == 0
    assert capsys.readouterr().out == (
        "Status: Running Normally\n"
        "Load: 0.29 (equivalent to about 0.29 CPU processes)\n"
        "Speed: 10012 units\n"
        "CPUS: 1\n"
        "Frozen: 0\n"
        "Util: 100%\n"
        "Avail: YES\n"
        "Procs: Running 1 MOSIX processes\n"
        "Accept: Yes, will welcome processes from here\n"
        "Memory: Available 903MB/1010MB\n"
    )
    assert mosctl.main(["localstatus"]) == 0
    assert capsys.readouterr().out.endswith(
        "Memory: Available 903MB/1010MB\n"
        "Swap: Available 0.8GB/0.9GB\n"
        "Daemons:\n"
        "Master Daemon: Up\n"
        "MOSIX Daemon : Up\n"
        "Queue Manager: Up\n"
        "Remote Daemon: Up\n"
        "Guest processes from grid: 0/10\n"
    )
    assert mosctl.main(["status", "17"]) == 0  # never reported: dead
    assert capsys.readouterr().out.startswith("Status: Not responding")
    assert mosctl.main(["whois", "17"]) == 0
    assert capsys.readouterr().out == "cmos-17.cs.huji.ac.il\n"
    assert mosctl.main(["whois", "132.65.174.18"]) == 0
    assert capsys.readouterr().out == "18\n"
    assert mosctl.main(["status", "99"]) == 1
    assert 'no MOSIX node "99"' in capsys.readouterr().err


def test_setpe_R_as_in_the_tutorial(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    conf = cluster.MosixCluster(
        spec=cluster.MosixClusterSpec(
            nodes=[cluster.NodeSpan(first="mos1.cs.huji.ac.il", last="mos38.cs.huji.ac.il")],
            grid=[
                cluster.GridPeer(
                    first="mos51.cs.huji.ac.il", last="mos66.cs.huji.ac.il", pri=45, proximate=True, outsider=True
                ),
                cluster.GridPeer(
                    first="cmos-16.cs.huji.ac.il", last="cmos-20.cs.huji.ac.il", pri=45, proximate=True, outsider=True
                ),
            ],
        )
    )
    api.store.create(cluster.MosixCluster, conf.wire())
    assert setpe.main(["-R"]) == 0
    assert capsys.readouterr().out == (
        "This MOSIX node is: 132.65.174.1 (mos1.cs.huji.ac.il) (no features)\n"
        "\n"
        "Nodes in this cluster:\n"
        "======================\n"
        "mos1.cs.huji.ac.il - mos38.cs.huji.ac.il\n"
        "\n"
        "Nodes from the rest of the grid:\n"
        "================================\n"
        "mos51.cs.huji.ac.il - mos66.cs.huji.ac.il: pri=45,proximate,outsider\n"
        "cmos-16.cs.huji.ac.il - cmos-20.cs.huji.ac.il: pri=45,proximate,outsider\n"
    )
    assert setpe.main(["-r", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["items"][0]["spec"]["grid"][0]["pri"] == 45


def test_setpe_r_without_configuration_lists_the_node_runs(
    api: client.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert setpe.main(["-r"]) == 0
    assert capsys.readouterr().out.splitlines()[4:] == [
        "mos1.cs.huji.ac.il",
        "cmos-16.cs.huji.ac.il - cmos-18.cs.huji.ac.il",
    ]


def test_migrate_records_requests(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    mine = {"user": getpass.getuser(), "jobId": 1}
    submit(api, "500", "mosrun -J1 testload", _spec("testload", **mine), {"phase": "Running", "node": "mos1"})
    submit(api, "501", "mosrun -J1 testload", _spec("testload", **mine), {"phase": "Running", "node": "mos1"})
    submit(api, "502", "mosrun -L testload", _spec("testload", locked=True), {"phase": "Running", "node": "mos1"})
    assert migrate.main(["500", "17"]) == 0
    assert migrate.main(["500", "home"]) == 0
    moved = api.get_job("500").spec.migration
    assert moved is not None and (moved.to, moved.serial, moved.method) == ("home", 2, job.MigrationMethod.AUTO)
    assert migrate.main(["500", "--postcopy", "17"]) == 0
    moved = api.get_job("500").spec.migration
    assert moved is not None and (moved.serial, moved.method) == (3, job.MigrationMethod.POST_COPY)
    assert migrate.main(["--stop-and-copy", "500", "home"]) == 0
    moved = api.get_job("500").spec.migration
    assert moved is not None and moved.method == job.MigrationMethod.STOP_AND_COPY
    assert migrate.main(["-J1", "freeze"]) == 0
    assert api.get_job("500").spec.frozen and api.get_job("501").spec.frozen
    assert migrate.main(["-J1", "continue"]) == 0
    assert not api.get_job("501").spec.frozen
    assert migrate.main(["501", "checkstop"]) == 0
    req = api.get_job("501").spec.checkpoint_request
    assert req is not None and (req.after, req.serial) == (job.AfterCheckpoint.STOP, 1)
    assert migrate.main(["502", "cmos-16"]) == 1
    assert "locked" in capsys.readouterr().err
    assert migrate.main(["500", "mos99"]) == 1
    assert 'no MOSIX node "mos99"' in capsys.readouterr().err
