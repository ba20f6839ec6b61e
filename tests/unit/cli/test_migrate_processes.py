"""migrate {id}.{index}: one process of a gang or commands file, named as mosps lists it, moves, freezes
and continues on its own (spec.processes); a move of the whole job moves each running process."""

from __future__ import annotations

import pytest

from mosix.api import job
from mosix.cli import migrate
from mosix.client import client
from tests.unit.cli.conftest import submit
from tests.unit.cli.test_processes_tables import gangs  # noqa: F401  (the fixture)


def _requests(api: client.Client, name: str) -> dict[str, object]:
    return {i: r.wire() for i, r in api.get_job(name).spec.processes.items()}


@pytest.mark.usefixtures("gangs")
def test_migrate_one_process_to_a_node_home_freeze_and_continue(api: client.Client) -> None:
    assert migrate.main(["500.1", "17"]) == 0
    assert _requests(api, "500") == {"1": {"migration": {"to": "cmos-17", "serial": 1, "method": "Auto"},
                                           "frozen": False}}
    assert migrate.main(["--postcopy", "500.1", "home"]) == 0
    assert _requests(api, "500")["1"] == {"migration": {"to": "home", "serial": 2, "method": "PostCopy"},
                                          "frozen": False}
    assert migrate.main(["500.0", "freeze"]) == 0
    assert api.get_job("500").spec.processes["0"].frozen
    assert not api.get_job("500").spec.frozen  # the job and its other processes are left alone
    assert migrate.main(["500.0", "continue"]) == 0
    assert not api.get_job("500").spec.processes["0"].frozen
    assert api.get_job("500").spec.migration is None


@pytest.mark.usefixtures("gangs")
def test_migrating_the_whole_gang_moves_each_running_process(api: client.Client) -> None:
    assert migrate.main(["500", "cmos-18"]) == 0
    moves = {i: (r.migration.to, r.migration.serial) for i, r in api.get_job("500").spec.processes.items()
             if r.migration is not None}
    assert moves == {"0": ("cmos-18", 1), "1": ("cmos-18", 1), "2": ("cmos-18", 1)}  # the frozen one too
    assert migrate.main(["501", "home"]) == 0  # a commands file: only its live lines (1), not done or pending ones
    assert sorted(api.get_job("501").spec.processes) == ["1"]


@pytest.mark.usefixtures("gangs")
@pytest.mark.parametrize(("argv", "message"), [
    (["500.7", "17"], "migrate: job 500 has no process 7 (started: 500.0, 500.1, 500.2)"),
    (["502.0", "17"], "migrate: job 502 has no process 0 (started: none yet)"),
    (["500.1", "checkpoint"], "migrate: 500.1: a gang or commands file is checkpointed as a whole, each process "
                              "into sets of its own: migrate 500 checkpoint"),
    (["500.1", "mos99"], "migrate: "),
    (["9999.1", "17"], "migrate: "),
])
def test_bad_process_requests_are_refused_and_change_nothing(api: client.Client, argv: list[str], message: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(argv) == 1
    assert capsys.readouterr().err.startswith(message)
    assert api.get_job("500").spec.processes == {}


def test_a_single_job_has_no_processes_to_name(api: client.Client, capsys: pytest.CaptureFixture[str]) -> None:
    submit(api, "600", "mosrun testload", job.MosixJobSpec(command=["testload"]),
           {"phase": "Running", "node": "mos1", "homeNode": "mos1"})
    assert migrate.main(["600.0", "17"]) == 1
    assert capsys.readouterr().err.strip() == "migrate: job 600 runs one process: give 600, not 600.0"
