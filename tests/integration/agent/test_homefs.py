"""The job's working directory across migration, with real runc, CRIU and FUSE: bound in at home
(127.0.0.2), a FUSE proxy to home over mutual TLS on the other node (127.0.0.3), and back."""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import pathlib
import ssl
import time

import aiohttp
import pytest
from aiohttp import web

from mosix.agent import containers, errors, jobs, migration, server, tls
from mosix.agent.homefs import exports, mounts
from tests.ports import free_port

MakeAgent = collections.abc.Callable[..., containers.Manager]
# One descriptor opened once (truncating) and written through to the end: if a restore lost its
# offset, later lines would overwrite earlier ones. One opened once with O_APPEND: every write lands at
# home's end of the file, away too. /scratch (-X) gets the same numbers.
APPEND = ("sh", "-c", "exec 3>numbers 4>>appended; i=0; while :; do echo $i >&3; echo $i >&4; "
          "echo $i >> /scratch/log; i=$((i+1)); sleep 0.05; done")


@dataclasses.dataclass
class Node:
    manager: containers.Manager
    url: str
    client: ssl.SSLContext
    exports: exports.Exports
    runner: web.AppRunner



@pytest.fixture
async def cluster(make_agent: MakeAgent, ca: tls.Identity,
                  tmp_path: pathlib.Path) -> collections.abc.AsyncIterator[dict[str, Node]]:
    """Agents on 127.0.0.2 and 127.0.0.3, each able to serve its jobs' directories and mount others'."""
    nodes: dict[str, Node] = {}
    runners: list[web.AppRunner] = []
    for n in ("2", "3"):
        address = f"127.0.0.{n}"
        ident = tls.issue(ca, tmp_path / f"tls{n}", f"node{n}", (address,))
        manager = make_agent(f"node{n}")
        port = free_port(address)
        url = f"https://{address}:{port}"
        manager.homefs = mounts.Mounter(url=url, identity=ident)
        served = exports.Exports()
        runners.append(await server.serve(manager, address, port, tls.server_context(ident), homefs=served))
        nodes[n] = Node(manager, url, tls.client_context(ident), served, runners[-1])
    yield nodes
    for r in runners:
        await r.cleanup()


def lines_of(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_for(path: pathlib.Path, count: int) -> list[str]:
    deadline = time.monotonic() + 60
    while len(lines := lines_of(path)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{path} has {len(lines)} lines, wanted {count}")
        await asyncio.sleep(0.05)
    return lines


def fd_pos(pid: int, fd: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("pos:"):
            return int(line.split()[1])
    raise AssertionError(f"no pos for fd {fd} of {pid}")


@pytest.mark.root
async def test_working_dir_follows_the_job_away_and_back(cluster: dict[str, Node], tmp_path: pathlib.Path) -> None:
    home, away = cluster["2"], cluster["3"]
    workdir = tmp_path / "work dir"  # a space on the way: paths are data, not shell
    workdir.mkdir()
    numbers = workdir / "numbers"
    home.exports.export("wd", workdir)
    home.manager.run(jobs.Job(name="wd", args=APPEND, workdir=str(workdir), home_url=home.url,
                              private_dirs=("/scratch",)))
    assert not mounts.is_mounted(home.manager.state_dir / "jobs" / "wd" / "home")  # at home: a bind, no FUSE
    await wait_for(numbers, 10)

    await migration.migrate(home.manager, "wd", away.url, home.client)
    fuse = away.manager.state_dir / "jobs" / "wd" / "home"
    assert mounts.is_mounted(fuse)
    pid = away.manager.status("wd").pid
    assert pid is not None
    assert pathlib.Path(f"/proc/{pid}/fd/3").readlink() == pathlib.Path(workdir) / "numbers"  # same path inside
    before = len(lines_of(numbers))
    await wait_for(numbers, before + 20)  # written away, arriving in home's real directory

    await migration.migrate(away.manager, "wd", home.url, away.client)
    assert away.manager.status("wd").state == jobs.State.STOPPED  # waits for the let-go (it holds the job's lock)
    assert not mounts.is_mounted(fuse)  # the job left: its FUSE mount is gone
    assert not (away.manager.state_dir / "jobs" / "wd" / "home").exists()
    before = len(lines_of(numbers))
    await wait_for(numbers, before + 10)

    pid = home.manager.status("wd").pid
    assert pid is not None
    home.manager.runtime.pause("wd")  # hold still: the offset and the file must agree
    try:
        assert fd_pos(pid, 3) == numbers.stat().st_size  # the offset held through both restores
        scratch = (home.manager.state_dir / "jobs" / "wd" / "rootfs" / "scratch" / "log").read_text().split()
    finally:
        home.manager.runtime.resume("wd")
    home.manager.kill("wd")
    written = [int(x) for x in numbers.read_text().split()]
    assert written == list(range(len(written)))  # complete and in order, nothing overwritten
    assert len(written) >= 40
    appended = [int(x) for x in (workdir / "appended").read_text().split()]
    assert appended == list(range(len(appended))) and len(appended) >= len(written) - 1
    # -X: the private directory moved with the container, never touched home's directory.
    assert [int(x) for x in scratch] == list(range(len(scratch)))
    assert len(scratch) >= len(written) - 2
    assert not (workdir / "scratch").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["appended", "numbers"]



@pytest.mark.root
async def test_a_job_reading_its_input_reads_on_from_where_it_was_after_each_move(
        cluster: dict[str, Node], tmp_path: pathlib.Path) -> None:
    """A job copies an input file from its working directory line by line, read through one descriptor held
    open: at home, away (through FUSE) and home again. The copy is the input, each line once."""
    home, away = cluster["2"], cluster["3"]
    workdir = tmp_path / "w"
    workdir.mkdir()
    lines = [f"line {i}:{'x' * (i % 50)}" for i in range(1500)]
    (workdir / "input").write_text("".join(f"{line}\n" for line in lines))
    copy = ("sh", "-c", "exec 3>copy; while read -r l; do echo \"$l\" >&3; sleep 0.005; done < input")
    home.exports.export("reader", workdir)
    home.manager.run(jobs.Job(name="reader", args=copy, workdir=str(workdir), home_url=home.url))
    copied = workdir / "copy"
    await wait_for(copied, 100)
    await migration.migrate(home.manager, "reader", away.url, home.client)
    await wait_for(copied, len(lines_of(copied)) + 200)  # read away, from where it was
    await migration.migrate(away.manager, "reader", home.url, away.client)
    deadline = time.monotonic() + 120
    while home.manager.status("reader").state == jobs.State.RUNNING:
        assert time.monotonic() < deadline, f"copied {len(lines_of(copied))} of {len(lines)} lines"
        await asyncio.sleep(0.1)
    assert home.manager.status("reader").exit_code == 0
    assert lines_of(copied) == lines

@pytest.mark.root
async def test_starting_away_needs_home_to_serve_the_directory(cluster: dict[str, Node], tmp_path: pathlib.Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose home has not exported its directory does not start elsewhere (clear error), and
    the unexported directory is never reachable."""
    home, away = cluster["2"], cluster["3"]
    workdir = tmp_path / "secret"
    workdir.mkdir()
    (workdir / "data").write_text("home only\n")
    job = jobs.Job(name="nope", args=("cat", "data"), workdir=str(workdir), home_url=home.url)
    monkeypatch.setattr(mounts, "MOUNT_TIMEOUT", 3.0)
    with pytest.raises(errors.JobError, match="not mounted"):
        await asyncio.to_thread(away.manager.run, job)  # the home server runs on this thread's loop
    home.exports.export("nope", workdir)
    await asyncio.to_thread(away.manager.run, job)
    assert await asyncio.to_thread(away.manager.wait, "nope", 30) == 0
    assert away.manager.stdout_path("nope").read_text() == "home only\n"


@pytest.mark.root
async def test_homefs_needs_an_agent_certificate(cluster: dict[str, Node], ca: tls.Identity,
                                                 tmp_path: pathlib.Path) -> None:
    home = cluster["2"]
    home.exports.export("wd", tmp_path)
    anonymous = ssl.create_default_context(cafile=str(ca.cert))  # trusts the server, shows no certificate
    async with aiohttp.ClientSession() as session:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
            async with session.post(f"{home.url}/homefs/wd/meta", json={"op": "list", "args": {"path": ""}},
                                    ssl=anonymous) as resp:
                await resp.read()
    # With a certificate, the same request is answered, and a path out of the directory is refused.
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{home.url}/homefs/wd/meta", json={"op": "list", "args": {"path": ""}},
                                ssl=cluster["3"].client) as resp:
            assert resp.status == 200
        async with session.post(f"{home.url}/homefs/wd/meta", json={"op": "stat", "args": {"path": "../.."}},
                                ssl=cluster["3"].client) as resp:
            assert resp.status == 422
        async with session.post(f"{home.url}/homefs/other/meta", json={"op": "stat", "args": {"path": ""}},
                                ssl=cluster["3"].client) as resp:
            assert resp.status == 403


@pytest.mark.root
async def test_a_job_restores_elsewhere_while_its_home_is_down(cluster: dict[str, Node],
                                                               tmp_path: pathlib.Path) -> None:
    """Recovery from a checkpoint after the home node died: the job runs on, its working directory an
    empty stand-in whose files fail until home is back (it held none open, so the restore works)."""
    home, away = cluster["2"], cluster["3"]
    workdir = tmp_path / "w"
    workdir.mkdir(mode=0o710)  # an unusual mode: CRIU checks the cwd's on restore, the stand-in must show it
    home.exports.export("orphan", workdir)
    count = ("sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")
    await asyncio.to_thread(home.manager.run, jobs.Job(name="orphan", args=count, workdir=str(workdir),
                                                       home_url=home.url))
    await wait_for(home.manager.stdout_path("orphan"), 5)
    ckpt = await asyncio.to_thread(home.manager.checkpoint, "orphan", False)
    await home.runner.cleanup()  # home is gone
    await asyncio.to_thread(away.manager.restore, "orphan", ckpt)
    assert mounts.is_mounted(away.manager.state_dir / "jobs" / "orphan" / "home")
    before = len(lines_of(away.manager.stdout_path("orphan")))
    await wait_for(away.manager.stdout_path("orphan"), before + 5)  # it runs on
    assert "unreachable" in (away.manager.state_dir / "jobs" / "orphan" / "homefs.log").read_text()
    await asyncio.to_thread(away.manager.kill, "orphan")
