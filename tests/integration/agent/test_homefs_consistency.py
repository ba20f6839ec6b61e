"""What a job sees through the FUSE proxy of its home directory, with writes behind and reads ahead:
real FUSE mounts (the agent's own `fs` process) of a home agent's export over mutual TLS.

The file operations run in a worker thread: the home agent answers on this test's event loop."""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import dataclasses
import errno
import os
import pathlib
import ssl
import subprocess
import time
import urllib.parse

import pytest
import trio

from mosix.agent import containers, errors, jobs, server, tls
from mosix.agent.homefs import exports, fs, mounts, remote, stream, wire
from tests.ports import free_port

MakeAgent = collections.abc.Callable[..., containers.Manager]
MiB = 1 << 20


@dataclasses.dataclass
class Mount:
    home: pathlib.Path  # the real directory at home
    away: pathlib.Path  # the same directory through FUSE
    job_dir: pathlib.Path
    mounter: mounts.Mounter
    served: exports.Exports
    url: str
    client: ssl.SSLContext  # an agent's certificate, as the FUSE process has
    identity: tls.Identity  # the mounting agent's TLS files


async def mount(make_agent: MakeAgent, ca: tls.Identity, tmp_path: pathlib.Path,
                home_dir: pathlib.Path) -> collections.abc.AsyncIterator[Mount]:
    home_id = tls.issue(ca, tmp_path / "tls-home", "home", ("127.0.0.2",))
    away_id = tls.issue(ca, tmp_path / "tls-away", "away", ("127.0.0.3",))
    served = exports.Exports()
    served.export("job", home_dir)
    port = free_port("127.0.0.2")
    url = f"https://127.0.0.2:{port}"
    runner = await server.serve(make_agent("home"), "127.0.0.2", port, tls.server_context(home_id), homefs=served)
    mounter = mounts.Mounter(url="https://127.0.0.3:1", identity=away_id)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    try:
        away = await asyncio.to_thread(mounter.source, jobs.Job(name="job", args=("x",), workdir=str(home_dir),
                                                               home_url=url), job_dir)
        assert away is not None and mounts.is_mounted(away)
        yield Mount(home_dir, away, job_dir, mounter, served, url, tls.client_context(away_id), away_id)
    finally:
        await asyncio.to_thread(mounter.close)
        await runner.cleanup()


@pytest.fixture
async def homefs(make_agent: MakeAgent, ca: tls.Identity,
                 tmp_path: pathlib.Path) -> collections.abc.AsyncIterator[Mount]:
    """A home directory mounted away through FUSE."""
    home_dir = tmp_path / "home"
    home_dir.mkdir()
    async for m in mount(make_agent, ca, tmp_path, home_dir):
        yield m


@pytest.fixture
async def full_homefs(make_agent: MakeAgent, ca: tls.Identity,
                      tmp_path: pathlib.Path) -> collections.abc.AsyncIterator[Mount]:
    """A home directory on a 1 MiB tmpfs (writes there fail with ENOSPC), mounted away through FUSE."""
    home_dir = tmp_path / "small"
    home_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(home_dir)], check=True)
    try:
        async for m in mount(make_agent, ca, tmp_path, home_dir):
            yield m
    finally:
        subprocess.run(["umount", "-l", str(home_dir)], check=True)


def failures(*steps: collections.abc.Callable[[], object]) -> list[int]:
    """The errno of every step that failed, in order."""
    out = []
    for step in steps:
        try:
            step()
        except OSError as e:
            out.append(e.errno or 0)
    return out


@pytest.mark.root
async def test_a_write_failing_at_home_is_reported_at_fsync_or_close(full_homefs: Mount) -> None:
    """Writes return before home has them, so home's error comes at the next write, fsync or close
    (as NFS reports it), and the agent's drain before a dump refuses while one is unreported."""
    m = full_homefs

    def run() -> None:
        block = os.urandom(MiB)
        fd = os.open(m.away / "big", os.O_WRONLY | os.O_CREAT, 0o600)
        got = failures(*[lambda: os.write(fd, block)] * 3, lambda: os.fsync(fd), lambda: os.close(fd))
        assert errno.ENOSPC in got  # 3 MiB never fit in 1 MiB: the job was told

        fd = os.open(m.away / "small", os.O_WRONLY | os.O_CREAT, 0o600)
        assert os.write(fd, b"x" * 4096) == 4096  # behind: home's answer is not awaited
        with pytest.raises(errors.JobError, match="not all done"):
            m.mounter.drain(m.job_dir)  # a dump now would hide the failure from the job
        assert failures(lambda: os.close(fd)) == [errno.ENOSPC]  # closed all the same; the error is the write's
        m.mounter.drain(m.job_dir)  # reported: nothing held back any more

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_an_agent_restarted_after_a_crash_drains_and_releases_the_mounts_it_inherited(
        full_homefs: Mount) -> None:
    """The FUSE process outlives a crash of its agent (its own session; the keeper adopts it), and so does
    the job's mount. The restarted agent, which did not start that process, still drains the mount before
    a dump and unmounts it when the job leaves."""
    m = full_homefs
    restarted = mounts.Mounter(url="https://127.0.0.3:1", identity=m.identity)  # knows of no FUSE process

    def run() -> None:
        started = m.mounter.server_pid(m.job_dir)
        assert started is not None and restarted.server_pid(m.job_dir) == started  # its traffic is the job's
        with (m.home / "filler").open("wb") as f, contextlib.suppress(OSError):
            f.write(b"f" * 2 * MiB)  # home's disk full
        fd = os.open(m.away / "small", os.O_WRONLY | os.O_CREAT, 0o600)
        assert os.write(fd, b"x" * 4096) == 4096  # behind: home's refusal is not reported yet
        with pytest.raises(errors.JobError, match="not all done"):
            restarted.drain(m.job_dir)  # a dump now would hide the failure from the job
        assert failures(lambda: os.close(fd)) == [errno.ENOSPC]
        restarted.drain(m.job_dir)
        restarted.release(m.job_dir)  # the job left: its mount goes, and with it the FUSE process
        assert not mounts.is_mounted(m.away) and restarted.server_pid(m.job_dir) is None

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_drain_returns_with_every_write_at_home(homefs: Mount) -> None:
    m = homefs

    def run() -> None:
        block = os.urandom(MiB)
        fd = os.open(m.away / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for _ in range(6):
                os.write(fd, block)
            m.mounter.drain(m.job_dir)  # fd still open, nothing flushed by a close
            assert (m.home / "f").read_bytes() == block * 6
        finally:
            os.close(fd)
        assert not (m.away / ".mosix-drain").exists()  # the drain's name is never a file

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_read_ahead_never_serves_bytes_older_than_a_write_here(homefs: Mount) -> None:
    m = homefs
    old, new = b"a" * MiB, b"b" * MiB
    (m.home / "f").write_bytes(old * 8)

    def run() -> None:
        reader = os.open(m.away / "f", os.O_RDONLY)
        writer = os.open(m.away / "f", os.O_WRONLY)
        try:
            assert os.pread(reader, MiB, 0) == old  # sequential: the next chunks are fetched ahead
            assert os.pwrite(writer, new, 2 * MiB) == MiB
            os.posix_fadvise(reader, 0, 0, os.POSIX_FADV_DONTNEED)  # the kernel's copy gone: ask the proxy
            assert os.pread(reader, MiB, MiB) == old
            assert os.pread(reader, MiB, 2 * MiB) == new
            assert os.pread(reader, MiB, 3 * MiB) == old
        finally:
            os.close(writer)
            os.close(reader)
        assert (m.home / "f").read_bytes() == old * 2 + new + old * 5

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_a_file_changed_at_home_is_seen_at_the_next_open(homefs: Mount) -> None:
    """Close-to-open, as NFS: what another process wrote at home shows at the next open through FUSE,
    size included, though the mount had just looked at the file."""
    m = homefs
    (m.home / "log").write_bytes(b"one\n")

    def run() -> None:
        assert (m.away / "log").read_bytes() == b"one\n"  # size and pages now known away
        assert os.stat(m.away / "log").st_size == 4
        with (m.home / "log").open("r+b") as f:  # another process at home: same size, then longer
            f.write(b"two\n")
            f.write(b"three\n")
        assert (m.away / "log").read_bytes() == b"two\nthree\n"

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_the_data_stream_serves_a_job_only_its_own_open_files(homefs: Mount, tmp_path: pathlib.Path) -> None:
    m = homefs
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret").write_bytes(b"not yours")
    m.served.export("other", other)
    fh = m.served.meta("other", "open", {"path": "secret", "flags": os.O_RDONLY})["fh"]
    url = urllib.parse.urlsplit(m.url)
    assert url.hostname is not None and url.port is not None

    async def frames(job: str) -> tuple[int, bytes]:
        s = stream.Stream(url.hostname or "", url.port or 0, job, m.client)
        try:
            return await s.call(wire.Op.READ, fh, 0, 100)
        finally:
            s.close()

    with pytest.raises(remote.RemoteError) as refused:
        await asyncio.to_thread(trio.run, frames, "job")  # another job's handle number
    assert refused.value.errno == errno.EBADF
    with pytest.raises(remote.RemoteError) as refused:
        await asyncio.to_thread(trio.run, frames, "nobody")  # not a job this node is home of
    assert refused.value.errno == errno.EACCES
    assert await asyncio.to_thread(trio.run, frames, "other") == (0, b"not yours")


@pytest.mark.root
async def test_sequential_reads_come_in_large_requests(homefs: Mount) -> None:
    """The mount's read-ahead stays raised (the kernel lowers it when the FUSE process answers INIT),
    so a sequential reader costs one request per MiB, not per 128 KiB."""
    real = os.path.join(os.path.realpath(homefs.away.parent), homefs.away.name)  # not a request to FUSE
    with open("/proc/self/mountinfo") as f:
        device = next(fields[2] for fields in map(str.split, f) if fields[4] == real)
    assert int(pathlib.Path(f"/sys/class/bdi/{device}/read_ahead_kb").read_text()) == mounts.READ_AHEAD_KB


@pytest.mark.root
async def test_small_writes_reach_home_while_the_file_stays_open(homefs: Mount) -> None:
    """The kernel caches writes (its own writeback waits 30 s); the FUSE process sends them on within
    a fraction of a second while a file is open for writing, so a job's log shows at home as it grows."""
    m = homefs

    def run() -> None:
        fd = os.open(m.away / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for i in range(3):
                os.write(fd, b"line %d\n" % i)
                want = b"".join(b"line %d\n" % j for j in range(i + 1))
                deadline = time.monotonic() + 10
                while (m.home / "log").read_bytes() != want:
                    assert time.monotonic() < deadline, f"{want!r} not at home: {(m.home / 'log').read_bytes()!r}"
                    time.sleep(0.02)
        finally:
            os.close(fd)

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_appends_land_at_the_end_of_what_home_holds(homefs: Mount) -> None:
    """Home opens files without O_APPEND (the kernel places appends, at its size of the file): appends
    from two descriptors, and after a change at home, still go to the end, in order."""
    m = homefs
    (m.home / "f").write_bytes(b"home\n")

    def run() -> None:
        a = os.open(m.away / "f", os.O_WRONLY | os.O_APPEND)
        b = os.open(m.away / "f", os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(50):
                os.write(a if i % 2 else b, b"%d\n" % i)
        finally:
            os.close(a)
            os.close(b)
        with (m.home / "f").open("ab") as f:  # another process at home
            f.write(b"more from home\n")
        fd = os.open(m.away / "f", os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"last\n")
        finally:
            os.close(fd)

    await asyncio.to_thread(run)
    expected = b"home\n" + b"".join(b"%d\n" % i for i in range(50)) + b"more from home\nlast\n"
    assert (m.home / "f").read_bytes() == expected


@pytest.mark.root
async def test_a_file_shortened_at_home_is_seen_shorter(homefs: Mount) -> None:
    """The kernel keeps its own size of a cached file; a file home made shorter is shown anew, at the next
    open and (once the name's cache expires) at the next stat."""
    m = homefs
    (m.home / "f").write_bytes(b"0123456789")

    def run() -> None:
        assert (m.away / "f").read_bytes() == b"0123456789"
        (m.home / "f").write_bytes(b"0123")
        assert (m.away / "f").read_bytes() == b"0123"
        (m.home / "f").write_bytes(b"01")
        time.sleep(fs.TIMEOUT + 0.2)
        assert os.stat(m.away / "f").st_size == 2

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_size_and_mtime_through_the_mount_are_homes_after_close(homefs: Mount) -> None:
    """The kernel keeps a cached file's size and mtime itself; after close, home has the same."""
    m = homefs

    def run() -> None:
        fd = os.open(m.away / "f", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(100):
                os.write(fd, b"x" * 1000)
        finally:
            os.close(fd)
        away, home = os.stat(m.away / "f"), os.stat(m.home / "f")
        assert away.st_size == home.st_size == 100_000
        assert away.st_mtime_ns == home.st_mtime_ns
        time.sleep(fs.TIMEOUT + 0.2)  # the kernel asks again: nothing changed, nothing renumbered
        assert os.stat(m.away / "f").st_ino == away.st_ino

    await asyncio.to_thread(run)


@pytest.mark.root
async def test_appends_from_two_nodes_all_land(make_agent: MakeAgent, ca: tls.Identity, tmp_path: pathlib.Path) -> None:
    """Two nodes append to one file of the same home directory at once (as `echo >>` from a gang's
    processes): home places every append at its end, so none overwrites another."""
    home_dir = tmp_path / "home"
    home_dir.mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async for a in mount(make_agent, ca, tmp_path / "a", home_dir):
        async for b in mount(make_agent, ca, tmp_path / "b", home_dir):

            def append(m: Mount, tag: bytes) -> None:
                fd = os.open(m.away / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    for i in range(300):
                        os.write(fd, b"%s %d\n" % (tag, i))
                finally:
                    os.close(fd)

            await asyncio.gather(asyncio.to_thread(append, a, b"a"), asyncio.to_thread(append, b, b"b"))
    lines = (home_dir / "log").read_bytes().splitlines()
    for tag in (b"a", b"b"):
        assert [line for line in lines if line.startswith(tag + b" ")] == [b"%s %d" % (tag, i) for i in range(300)]
    assert len(lines) == 600
