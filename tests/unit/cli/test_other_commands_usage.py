"""Bad command lines of the other MOSIX commands: exit 2, the flag named, nothing touched."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mosix.cli import migrate, mosctl, moskillall, mosps, mosq, setpe, usage

Main = Callable[[list[str] | None], int]

BAD: list[tuple[Main, list[str], str]] = [
    (mosps.main, ["-Z"], "mosps: -Z: unknown option"),
    (mosps.main, ["-AJx"], "mosps: -J: needs a job id"),
    (mosps.main, ["-L", "-V"], "mosps: -L:"),
    (mosps.main, ["extra"], "mosps: extra: unexpected argument"),
    (mosps.main, ["-u"], "mosps: -u: needs a list of users"),
    (mosps.main, ["-Ap", ","], "mosps: -p: needs a list of process ids"),
    (mosps.main, ["-o", "xml"], "mosps: -o: unknown output format"),
    (mosq.main, [], "mosq: which operation"),
    (mosq.main, ["purge"], "mosq: purge: unknown operation"),
    (mosq.main, ["delete"], "mosq: delete: takes {pid}"),
    (mosq.main, ["cngpri", "20"], "mosq: cngpri: takes {newpri} {pid}"),
    (mosq.main, ["cngpri", "high", "1001"], "mosq: cngpri: new priority"),
    (mosq.main, ["list", "--bogus"], "mosq: --bogus: unknown option"),
    (migrate.main, ["1001"], "migrate: give {pid} and a target"),
    (migrate.main, ["-Jx", "freeze"], "migrate: -J: needs a job id"),
    (migrate.main, ["1001", "no_such!"], "migrate: no_such!: not a node"),
    (migrate.main, ["-q", "1001", "home"], "migrate: -q: unknown option"),
    (migrate.main, ["1001", "--postcopy", "freeze"], "migrate: --postcopy: only for a move"),
    (migrate.main, ["--postcopy", "--stop-and-copy", "1001", "2"], "migrate: --stop-and-copy: give --postcopy"),
    (moskillall.main, ["-NOSUCH"], "moskillall: -NOSUCH: unknown signal"),
    (moskillall.main, ["-99"], "moskillall: -99: no signal number 99"),
    (moskillall.main, ["-9", "-15"], "moskillall: -15: give one signal"),
    (moskillall.main, ["1001"], "moskillall: 1001: unexpected argument"),
    (mosctl.main, [], "mosctl: which operation"),
    (mosctl.main, ["stat"], "mosctl: stat: unknown operation"),
    (mosctl.main, ["whois"], "mosctl: whois: takes a node"),
    (mosctl.main, ["localstatus", "3"], "mosctl: localstatus: takes no arguments"),
    (setpe.main, [], "setpe: give -r"),
    (setpe.main, ["-r", "-R"], "setpe: -R: give -r or -R, not both"),
    (setpe.main, ["-x"], "setpe: -x: unknown option"),
]


@pytest.mark.parametrize(("command", "argv", "message"), BAD, ids=[" ".join([m, *a]) for _, a, m in BAD])
def test_bad_line_exits_2_naming_the_flag(command: Main, argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert command(argv) == usage.USAGE_EXIT
    assert capsys.readouterr().err.startswith(message)
