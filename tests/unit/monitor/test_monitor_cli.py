"""The command lines of mon and mmon: shared cluster options, -c lists, -h HOST; bad flags exit 2 naming them."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from mosix.api import meta, node
from mosix.client import local
from mosix.monitor import mmon, mon, sources

Main = Callable[[list[str] | None], int]


@pytest.mark.parametrize(("main", "prog"), [(mon.main, "mon"), (mmon.main, "mmon")])
@pytest.mark.parametrize("flag", ["--bogus", "-x", "--output"])
def test_unknown_flags_exit_2_naming_the_flag(
    main: Main, prog: str, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([flag, "json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: {flag}: unknown option")
    assert f"usage: {prog}" in err


def test_shared_options_are_taken(state: pathlib.Path) -> None:
    opts = mon.parse(["--local", "--namespace", "ns", "--context=c", "--kubeconfig", "k"])
    assert (opts.local, opts.namespace, opts.context, opts.kubeconfig) == (True, "ns", "c", "k")
    assert sources.from_common(opts).label == "local"


def test_a_shared_option_without_its_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert mmon.main(["--context"]) == 2
    assert capsys.readouterr().err.startswith("mmon: --context: needs a value")


@pytest.mark.parametrize(("main", "keys"), [(mon.main, "l f m u d D h q"), (mmon.main, "l f m u g i o s < > d D h q")])
def test_help_lists_every_key(main: Main, keys: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n  {key}  " in out for key in keys.split())


def test_mmon_cluster_list_syntax(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    opts = mmon.parse(["-c", f"local, local:/srv/m, {kubeconfig}, {kubeconfig}@ctx1, @ctx2, ctx3", "-h", "mos2"])
    found = sources.parse_list(opts.clusters or "", opts.common)
    assert [s.label for s in found] == ["local", "local:/srv/m", str(kubeconfig), f"{kubeconfig}@ctx1", "@ctx2", "ctx3"]
    assert opts.host == "mos2"


def test_mmon_c_as_the_tutorial_writes_it() -> None:
    opts = mmon.parse(["-c", "amos,", "bmos,", "cmos", "--local"])
    assert (opts.clusters, opts.common.local) == ("amos,bmos,cmos", True)
    assert mmon.parse(["-camos,bmos"]).clusters == "amos,bmos"


@pytest.mark.parametrize(
    ("argv", "message"), [(["-c", " , "], "-c: needs at least one"), (["-h"], "-h: needs a value")]
)
def test_mmon_bad_values_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert mmon.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"mmon: {message}")


def test_mmon_h_starts_on_the_cluster_that_has_the_node(state: pathlib.Path, tmp_path: pathlib.Path) -> None:
    other = local.LocalStore(tmp_path / "bmos")
    other.init()
    other.create(
        node.MosixNode,
        node.MosixNode(
            metadata=meta.ObjectMeta(name="bmos-01"),
            spec=node.MosixNodeSpec(number=1, address="10.1.0.1", hostname="bmos-01.example.org"),
        ).wire(),
    )
    spec = f"local:{tmp_path / 'missing'},local,local:{tmp_path / 'bmos'}"
    assert mmon.clusters(mmon.parse(["-c", spec, "-h", "bmos-01"]))[1] == 2
    assert mmon.clusters(mmon.parse(["-c", spec, "-h", "mos3"]))[1] == 1
    assert mmon.clusters(mmon.parse(["--local", "-h", "mos1"]))[1] == 0


def test_mmon_h_of_an_unknown_node_exits_1(state: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mmon.main(["-c", "local", "-h", "nosuch"]) == 1
    assert capsys.readouterr().err.startswith("mmon: no node named 'nosuch' in local")
