"""mosps keeps the tutorial's columns (FRZ N/A: can't be frozen) and says under the table why a job cannot
migrate, when CRIU named the reason (status.unsupportedReason)."""

from __future__ import annotations

import json

import pytest

from mosix.api import job
from mosix.cli import mosps
from mosix.client import client
from tests.unit.cli.conftest import submit


def _spec(*command: str, **fields: object) -> job.MosixJobSpec:
    return job.MosixJobSpec.model_validate({"command": list(command), "user": "llor"} | fields)


@pytest.fixture
def refused(api: client.Client) -> client.Client:
    running: dict[str, object] = {"phase": "Running", "node": "mos1", "homeNode": "mos1"}
    submit(api, "24081", "mosrun -b testload", _spec("testload"), running)
    submit(api, "24090", "mosrun -e ./server", _spec("./server", unsupported="Continue"),
           running | {"migratable": False, "unsupportedReason": "a connected TCP socket"})
    submit(api, "24095", "mosrun -w perfmon", _spec("perfmon", unsupported="Warn"),
           running | {"node": "cmos-18", "migrations": 1, "migratable": False,
                      "unsupportedReason": "fd 3 is anon_inode:[perf_event]"})
    submit(api, "30253", "/sbin/remote", _spec("remote"),  # unmigratable, no reason known: the tutorial's row
           {"phase": "Running", "node": "mos1", "homeNode": "mos3", "migratable": False})
    return api


def test_the_reason_follows_the_table(refused: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-AMn"]) == 0
    assert capsys.readouterr().out == (
        "PID    WHERE    FROM  CLASS  FRZ  NMIGS  TTY  CMD\n"
        "24081  here     here  local  -    0      ?    mosrun -b testload\n"
        "24090  here     here  local  N/A  0      ?    mosrun -e ./server\n"
        "24095  cmos-18  here  local  N/A  1      ?    mosrun -w perfmon\n"
        "30253  here     mos3  local  N/A  0      ?    /sbin/remote\n"
        "\n"
        "24090: not migratable: a connected TCP socket\n"
        "24095: not migratable: fd 3 is anon_inode:[perf_event]\n"
    )


def test_only_the_listed_jobs_reasons(refused: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-A", "-O"]) == 0  # only 24095 is away
    assert capsys.readouterr().out.splitlines()[-2:] == ["", "24095: not migratable: fd 3 is anon_inode:[perf_event]"]
    assert mosps.main(["-Ap", "24081,30253"]) == 0  # no reason among them: the table alone
    assert capsys.readouterr().out.splitlines()[-1].split()[0] == "30253"


def test_json_is_still_the_objects_alone(refused: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert mosps.main(["-A", "-o", "json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert {i["metadata"]["name"]: i["status"].get("unsupportedReason") for i in items}["24090"] == (
        "a connected TCP socket"
    )
