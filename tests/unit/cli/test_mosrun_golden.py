"""Every mosrun line of the tutorial parses into the expected job; bad lines name their flag."""

from __future__ import annotations

import datetime
import pathlib
import shlex
from typing import Any

import pytest

from mosix.cli import mosrun, usage

BASE: dict[str, Any] = {
    "image": "mosix/testload:local",
    "user": "me",
    "workingDir": "/home/me",
    "env": {},
    "placement": "Home",
    "nodeRanges": [],
    "gridClass": 0,
    "jobId": 0,
    "unsupported": "Abort",
    "privateDirs": [],
    "hostTime": False,
    "stayOnSyscalls": False,
    "locked": False,
    "stdin": False,
    "frozen": False,
    "processes": {},
}

# (the tutorial's exact line, the spec fields it must set beyond BASE)
TUTORIAL: list[tuple[str, dict[str, Any]]] = [
    ("mosrun myprog 1 2 3", {"command": ["myprog", "1", "2", "3"]}),
    ("mosrun testload", {"command": ["testload"]}),
    ("mosrun -rmos1 myprog", {"command": ["myprog"], "placement": "Node", "node": "mos1"}),
    ("mosrun -b myprog", {"command": ["myprog"], "placement": "Best"}),
    ("mosrun -3 myprog 1 2 3", {"command": ["myprog", "1", "2", "3"], "placement": "Node", "node": "3"}),
    ("mosrun -132.65.174.1 myprog", {"command": ["myprog"], "placement": "Node", "node": "132.65.174.1"}),
    ("mosrun -h myprog", {"command": ["myprog"], "placement": "Home"}),
    (
        "mosrun -j1-4,7-9 myprog",
        {"command": ["myprog"], "placement": "Range", "nodeRanges": [{"first": 1, "last": 4}, {"first": 7, "last": 9}]},
    ),
    ("mosrun -G -m1000 myprog", {"command": ["myprog"], "gridClass": 1, "memoryMb": 1000}),
    ("mosrun -G2 myprog", {"command": ["myprog"], "gridClass": 2}),
    ("mosrun -J20 myprog", {"command": ["myprog"], "jobId": 20}),
    (
        "mosrun -E -rmos4 mylinuxprog",
        {"command": ["mylinuxprog"], "batch": "Native", "placement": "Node", "node": "mos4"},
    ),
    (
        "mosrun -M/tmp -b mymosixprog",
        {"command": ["mymosixprog"], "batch": "Mosix", "placement": "Best", "workingDir": "/tmp"},
    ),
    ("mosrun -E/tmp myprog", {"command": ["myprog"], "batch": "Native", "workingDir": "/tmp"}),
    ("mosrun -M myprog", {"command": ["myprog"], "batch": "Mosix"}),
    (
        "mosrun -q -b -m1000 myprog",
        {"command": ["myprog"], "queue": {"runNow": False}, "placement": "Best", "memoryMb": 1000},
    ),
    (
        "mosrun -q60 -G -b -J1 myprog",
        {
            "command": ["myprog"],
            "queue": {"priority": 60, "runNow": False},
            "gridClass": 1,
            "placement": "Best",
            "jobId": 1,
        },
    ),
    (
        "mosrun -q30 -E -m500 myprog",
        {"command": ["myprog"], "queue": {"priority": 30, "runNow": False}, "batch": "Native", "memoryMb": 500},
    ),
    ("mosrun -e ls -la", {"command": ["ls", "-la"], "unsupported": "Continue"}),
    ("mosrun -w ls -la", {"command": ["ls", "-la"], "unsupported": "Warn"}),
    (
        "mosrun -C/tmp/myckpt -A20 myprog",
        {"command": ["myprog"], "checkpoint": {"base": "/tmp/myckpt", "intervalMinutes": 20}},
    ),
    (
        "mosrun -C/tmp/ckpt -A20 -N5 myprog",
        {"command": ["myprog"], "checkpoint": {"base": "/tmp/ckpt", "intervalMinutes": 20, "maxSets": 5}},
    ),
    (
        "mosrun -R/tmp/ckpt.1 -O3=/user/home/me/oldtmpfile",
        {"command": [], "recover": {"from": "/tmp/ckpt.1", "fdRemap": [{"fd": 3, "path": "/user/home/me/oldtmpfile"}]}},
    ),
    (
        "mosrun -R/tmp/ckpt.1 -O3=/path,4=/other",
        {
            "command": [],
            "recover": {"from": "/tmp/ckpt.1", "fdRemap": [{"fd": 3, "path": "/path"}, {"fd": 4, "path": "/other"}]},
        },
    ),
    ("mosrun -R/tmp/ckpt.1", {"command": [], "recover": {"from": "/tmp/ckpt.1", "fdRemap": []}}),
    ("mosrun -h -L myprog", {"command": ["myprog"], "locked": True}),
    ("mosrun -rmos2 -L myprog", {"command": ["myprog"], "placement": "Node", "node": "mos2", "locked": True}),
    (
        "mosrun -X/tmp -rmos2 -L testload -f/tmp/big -iosize 100 -write 4 -cpu 1",
        {
            "command": ["testload", "-f/tmp/big", "-iosize", "100", "-write", "4", "-cpu", "1"],
            "privateDirs": ["/tmp"],
            "placement": "Node",
            "node": "mos2",
            "locked": True,
        },
    ),
    (
        "mosrun -e matlab -nojvm -nodesktop -nodisplay",
        {"command": ["matlab", "-nojvm", "-nodesktop", "-nodisplay"], "unsupported": "Continue"},
    ),
    (
        "mosrun -E -b -i matlab -nojvm -nodesktop -nodisplay",
        {
            "command": ["matlab", "-nojvm", "-nodesktop", "-nodisplay"],
            "batch": "Native",
            "placement": "Best",
            "stdin": True,
        },
    ),
    ("mosrun -P4 -q myprog", {"command": ["myprog"], "parallel": 4, "queue": {"runNow": False}}),
    # "mosrun -P{n} -q / -Q": -Q queues like -q, with or without a priority.
    ("mosrun -P4 -Q myprog", {"command": ["myprog"], "parallel": 4, "queue": {"runNow": False}}),
    ("mosrun -Q30 myprog", {"command": ["myprog"], "queue": {"priority": 30, "runNow": False}}),
    ("mosrun -t -c -d myprog", {"command": ["myprog"], "hostTime": True, "stayOnSyscalls": True, "ioDecay": 0}),
    ("mosrun -d5000 myprog", {"command": ["myprog"], "ioDecay": 5000}),
    ("mosrun -i myprog", {"command": ["myprog"], "stdin": True}),
    ("mosrun -J1 testload -m 2", {"command": ["testload", "-m", "2"], "jobId": 1}),
]


def _parse(line: str) -> mosrun.Request:
    return mosrun.parse(shlex.split(line)[1:], cwd="/home/me", user="me")


@pytest.mark.parametrize(("line", "expected"), TUTORIAL, ids=[t[0] for t in TUTORIAL])
def test_tutorial_line_parses_into_the_expected_job(line: str, expected: dict[str, Any]) -> None:
    req = _parse(line)
    assert req.spec is not None
    assert req.spec.wire() == {**BASE, **expected}


def test_expected_duration_is_kept_as_the_minute_the_job_is_due() -> None:
    at = datetime.datetime(2026, 12, 2, 11, 20, 42, tzinfo=datetime.UTC)
    for flag, due in (("-D90", "2026-12-02T12:50Z"), ("-D01:30", "2026-12-02T12:50Z"),
                      ("-D2:01:00", "2026-12-04T12:20Z")):
        req = mosrun.parse([flag, "myprog"], cwd="/home/me", user="me", now=lambda: at)
        assert req.spec is not None and req.spec.wire()["due"] == due, flag


def test_commands_file_lines_become_the_command_set(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "commands-file").write_text(
        "my_program -a1 -if1 -of1\nmy_program -a2 -if2 -of2\n\nmy_program -a3 -if3 -of3\n"
    )
    monkeypatch.chdir(tmp_path)
    req = mosrun.parse(["-S4", "commands-file"], cwd="/home/me", user="me")
    assert req.spec is not None
    assert req.spec.wire()["commands"] == {
        "maxRunning": 4,
        "lines": [
            ["my_program", "-a1", "-if1", "-of1"],
            ["my_program", "-a2", "-if2", "-of2"],
            ["my_program", "-a3", "-if3", "-of3"],
        ],
    }


def test_inspect_asks_for_no_job() -> None:
    req = _parse("mosrun -I/tmp/ckpt.1")
    assert req.inspect == "/tmp/ckpt.1"
    assert req.spec is None


def test_long_options_and_the_command_line_are_kept() -> None:
    req = _parse("mosrun --image busybox:local --detach --env A=1 -b sh -c 'echo hi'")
    assert req.spec is not None and req.detach
    assert (req.spec.image, req.spec.env, req.spec.command) == ("busybox:local", {"A": "1"}, ["sh", "-c", "echo hi"])
    assert req.command_line == "mosrun --image busybox:local --detach --env A=1 -b sh -c 'echo hi'"


def test_options_after_the_program_belong_to_the_program() -> None:
    req = _parse("mosrun myprog -b -q")
    assert req.spec is not None
    assert (req.spec.command, req.spec.placement.value, req.spec.queue) == (["myprog", "-b", "-q"], "Home", None)


# (a bad command line, the flag the error must name, a word the message must hold)
BAD: list[tuple[str, str, str]] = [
    ("mosrun", "", "no program"),
    ("mosrun -b", "", "no program"),
    ("mosrun -Z myprog", "-Z", "unknown option"),
    ("mosrun --frobnicate myprog", "--frobnicate", "unknown option"),
    ("mosrun -r myprog", "-r", "host name"),
    ("mosrun -r_bad myprog", "-r", "not a valid host name"),
    ("mosrun -b -3 myprog", "-3", "conflicts with -b"),
    ("mosrun -rmos1 -h myprog", "-h", "conflicts with -r"),
    ("mosrun -3 -j1-2 myprog", "-j", "conflicts with -3"),
    ("mosrun -0 myprog", "-0", "node number must be 1-65535"),
    ("mosrun -3x myprog", "-3x", "not a node number"),
    ("mosrun -132.65.174 myprog", "-132.65.174", "not a node number"),
    ("mosrun -300.1.1.1 myprog", "-300.1.1.1", "not a node number"),
    ("mosrun -j myprog", "-j", "node ranges"),
    ("mosrun -j4-1 myprog", "-j", "range '4-1'"),
    ("mosrun -j1-4, myprog", "-j", "node ranges"),
    ("mosrun -Gx myprog", "-G", "grid class"),
    ("mosrun -m myprog", "-m", "memory in MB"),
    ("mosrun -m0 myprog", "-m", "memory (MB) must be 1-"),
    ("mosrun -m1.5 myprog", "-m", "whole number"),
    ("mosrun -J myprog", "-J", "job id"),
    ("mosrun -J-1 myprog", "-J", "whole number"),
    ("mosrun -q99999 myprog", "-q", "priority must be 0-65535"),
    ("mosrun -qhigh myprog", "-q", "priority must be a whole number"),
    ("mosrun -q -q60 myprog", "-q", "given twice"),
    ("mosrun -q -Q60 myprog", "-Q", "given twice"),
    ("mosrun -Q99999 myprog", "-Q", "priority must be 0-65535"),
    ("mosrun -P myprog", "-P", "number of processes"),
    ("mosrun -P4 myprog", "-P", "add -q"),
    ("mosrun -S myprog", "-S", "most lines"),
    ("mosrun -S4", "-S", "exactly one commands file"),
    ("mosrun -S4 /nonexistent/commands-file", "-S", "cannot read commands file"),
    ("mosrun -Etmp myprog", "-E", "absolute directory"),
    ("mosrun -E -M myprog", "-M", "conflicts with the other batch option"),
    ("mosrun -E -G myprog", "-G", "native batch job"),
    ("mosrun -C myprog", "-C", "file base name"),
    ("mosrun -A myprog", "-A", "minutes"),
    ("mosrun -A0 myprog", "-A", "must be 1-"),
    ("mosrun -N0 myprog", "-N", "must be 1-1000"),
    ("mosrun -I", "-I", "checkpoint file"),
    ("mosrun -I/tmp/ckpt.1 myprog", "-I", "give it alone"),
    ("mosrun -R myprog", "-R", "checkpoint file"),
    ("mosrun -R/tmp/ckpt.1 myprog", "-R", "give no program"),
    ("mosrun -O3=/path myprog", "-O", "use it with -R"),
    ("mosrun -R/tmp/ckpt.1 -O3", "-O", "fd=file pairs"),
    ("mosrun -R/tmp/ckpt.1 -Ox=/path", "-O", "fd=file pairs"),
    ("mosrun -X myprog", "-X", "absolute directory"),
    ("mosrun -hL myprog", "-h", "takes no value"),
    ("mosrun -bq myprog", "-b", "takes no value"),
    ("mosrun -d20000 myprog", "-d", "decay must be 0-10000"),
    ("mosrun -D myprog", "-D", "expected duration"),
    ("mosrun -D1:2:3:4 myprog", "-D", "DD:HH:MM"),
    ("mosrun -D2h myprog", "-D", "DD:HH:MM"),
    ("mosrun -D5 -D6 myprog", "-D", "given twice"),
    ("mosrun -L -L myprog", "-L", "given twice"),
    ("mosrun --image myprog", "", "no program"),
    ("mosrun --env NOEQUALS myprog", "--env", "KEY=VALUE"),
    ("mosrun --kubeconfig", "--kubeconfig", "needs a value"),
]


@pytest.mark.parametrize(("line", "flag", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_command_line_names_its_flag(line: str, flag: str, words: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        _parse(line)
    assert caught.value.flag == flag
    assert words in caught.value.message


@pytest.mark.parametrize("letter", sorted(mosrun.REQUIRED))
def test_a_flag_without_its_attached_value_says_what_to_attach(letter: str) -> None:
    with pytest.raises(usage.UsageError) as caught:
        _parse(f"mosrun -{letter} myprog")
    assert caught.value.flag == f"-{letter}"
    assert caught.value.message.startswith("needs ") and f"e.g. -{letter}" in caught.value.message


def test_usage_error_exits_2_and_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert mosrun.main(["-q99999", "myprog"]) == usage.USAGE_EXIT
    err = capsys.readouterr().err
    assert err.startswith("mosrun: -q: priority must be 0-65535")
    assert "usage: mosrun" in err
