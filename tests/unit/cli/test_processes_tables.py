"""mosps lists each process of a gang or commands file on its own line, as MOSIX lists each process;
mosq lists the job once; mosix logs merges the processes' outputs a whole line at a time."""

from __future__ import annotations

import datetime
import io
import pathlib

import pytest

from mosix.api import job
from mosix.cli import logs, mosps, mosq, mosrun
from mosix.client import client, local
from tests.unit.cli.conftest import submit


def _spec(**fields: object) -> job.MosixJobSpec:
    return job.MosixJobSpec.model_validate({"user": "llor"} | fields)


def _proc(node: str, phase: str = "Running", **fields: object) -> dict[str, object]:
    return {"node": node, "phase": phase} | fields


@pytest.fixture
def gangs(api: client.Client) -> client.Client:
    submit(api, "500", "mosrun -q -P3 testload", _spec(command=["testload"], parallel=3, queue={}),
           {"phase": "Running", "node": "mos1", "homeNode": "mos1", "processes": {
               "0": _proc("mos1", origPid=11), "1": _proc("cmos-16", migrations=2, origPid=12),
               "2": _proc("cmos-17", "Frozen", frozen="Auto", origPid=13)}})
    lines = [["echo", "a"], ["echo", "b c"], ["sleep", "9"]]
    submit(api, "501", "mosrun -S2 cmds", _spec(commands={"maxRunning": 2, "lines": lines}),
           {"phase": "Running", "node": "cmos-18", "homeNode": "mos1", "processes": {
               "0": _proc("cmos-18", "Succeeded", exitCode=0), "1": _proc("cmos-18"), "2": _proc("mos1", "Pending")}})
    submit(api, "502", "mosrun -q -P2 testload", _spec(command=["testload"], parallel=2, queue={}))
    return api


def test_mosps_shows_one_line_per_live_process(gangs: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-AMnP"]) == 0
    assert capsys.readouterr().out == (
        "PID    WHERE     FROM  ORIGPID  CLASS  FRZ  NMIGS  TTY  CMD\n"
        "500.0  here      here  11       local  -    0      ?    mosrun -q -P3 testload\n"
        "500.1  cmos-16   here  12       local  -    2      ?    mosrun -q -P3 testload\n"
        "500.2  cmos-17   here  13       local  A    0      ?    mosrun -q -P3 testload\n"
        "501.1  cmos-18   here  -        local  -    0      ?    echo 'b c'\n"
        "501.2  starting  here  -        local  -    0      ?    sleep 9\n"
        "502    queue     here  -        N/A    N/A  N/A    ?    mosrun -q -P2 testload\n"
    )


def test_mosps_filters_processes_by_their_own_node(gangs: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-AO"]) == 0  # local processes that are away: not those running here
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["500.1", "500.2", "501.1"]


def test_mosps_p_names_a_job_or_one_of_its_processes(gangs: client.Client,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-p", "500"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["500.0", "500.1", "500.2"]
    assert mosps.main(["-p", "500.1,501.2"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["500.1", "501.2"]


def test_mosq_lists_a_gang_once(gangs: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosq.main(["listall"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["500", "502"]


def test_logs_merge_process_streams_by_whole_lines(gangs: client.Client) -> None:
    store = gangs.store
    assert isinstance(store, local.LocalStore)
    home = store.state_dir / "nodes" / "mos1" / "home"

    def write(index: str, text: str) -> None:
        folder: pathlib.Path = home / f"501_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "stdout").open("a") as f:
            f.write(text)

    write("0", "a\nno newline")  # process 0 finished: even its unterminated last line is complete
    write("1", "b c\npart")
    out, err = io.BytesIO(), io.BytesIO()
    merged = logs.Lines()
    merged.copy(gangs, gangs.get_job("501"), {"stdout": out, "stderr": err})
    assert out.getvalue() == b"a\nno newlineb c\n"  # process 1's unfinished line waits for its end
    write("1", "ial\n")
    merged.copy(gangs, gangs.get_job("501"), {"stdout": out, "stderr": err})
    assert out.getvalue() == b"a\nno newlineb c\npartial\n"
    assert err.getvalue() == b""


def test_mosps_shows_when_a_job_is_due(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    spec = mosrun.parse(["-D1:30", "testload"], cwd="/home/me", user="llor",
                        now=lambda: datetime.datetime(2026, 12, 2, 11, 20, tzinfo=datetime.UTC)).spec
    assert spec is not None
    submit(api, "600", "mosrun -D1:30 testload", spec, {"phase": "Running", "node": "mos1", "homeNode": "mos1"})
    submit(api, "601", "mosrun testload", _spec(command=["testload"]), {"phase": "Running", "node": "mos1"})
    assert mosps.main(["-AD"]) == 0
    assert capsys.readouterr().out == (
        "PID  WHERE  FROM  CLASS  FRZ  DUE                TTY  CMD\n"
        "600  here   here  local  -    2026-12-02T12:50Z  ?    mosrun -D1:30 testload\n"
        "601  here   here  local  -    -                  ?    mosrun testload\n"
    )
