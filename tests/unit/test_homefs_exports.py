"""The home side of the working-directory proxy: every path stays inside the job's directory."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import mmap
import os
import pathlib
import shutil
import struct
import tempfile

import pytest

from mosix.agent import errors, jobs
from mosix.agent.homefs import confine, exports, mounts


@pytest.fixture
def served(tmp_path: pathlib.Path) -> exports.Exports:
    """Job "j" exports tmp/root; tmp/outside holds a secret; links inside point in and out."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    (root / "file").write_text("mine\n")
    (root / "out").symlink_to(outside)  # a directory link leading out
    (root / "secret-link").symlink_to(outside / "secret")  # a file link leading out
    (root / "rel-out").symlink_to("../outside/secret")
    (root / "in").symlink_to("sub")  # a link that stays inside
    (root / "sub" / "f").write_text("inside\n")
    e = exports.Exports()
    e.export("j", root)
    return e


def read(served: exports.Exports, job: str, fh: int, offset: int, size: int) -> bytes:
    buf = bytearray(size)
    return bytes(buf[:served.read_into(job, fh, offset, memoryview(buf))])


@pytest.mark.parametrize("path", ["..", "../outside/secret", "sub/../../outside/secret", "/etc/passwd",
                                  "out/secret", "secret-link", "rel-out", "a\0b"])
def test_escapes_are_refused(served: exports.Exports, path: str) -> None:
    ops: list[tuple[str, dict[str, int]]] = [("stat", {}), ("open", {"flags": os.O_RDONLY}), ("list", {}),
                                              ("readlink", {}), ("create", {"flags": os.O_WRONLY, "mode": 0o644})]
    if path not in ("secret-link", "rel-out"):  # removing a link itself, or making a name beside it, leaves nothing
        ops += [("unlink", {}), ("mkdir", {"mode": 0o755})]
    for op, args in ops:
        with pytest.raises(OSError, match=r"leaves|Not a directory|symbolic links|Errno") as caught:
            served.meta("j", op, {"path": path, **args})
        assert caught.value.errno in (errno.EACCES, errno.ENOTDIR, errno.ELOOP), (op, path, caught.value)
    assert (served_root(served).parent / "outside" / "secret").read_text() == "secret\n"


def served_root(served: exports.Exports) -> pathlib.Path:
    return served._root("j")


def test_creating_through_a_link_out_is_refused(served: exports.Exports) -> None:
    with pytest.raises(confine.Escape):
        served.meta("j", "create", {"path": "out/new", "flags": os.O_WRONLY, "mode": 0o644})
    with pytest.raises(OSError, match="symbolic links"):  # O_NOFOLLOW: never opened through a last link
        served.meta("j", "create", {"path": "secret-link", "flags": os.O_WRONLY | os.O_TRUNC, "mode": 0o644})
    with pytest.raises(confine.Escape):
        served.meta("j", "rename", {"path": "file", "new": "out/stolen"})
    outside = served_root(served).parent / "outside"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "secret\n"


def test_links_inside_work_and_links_out_are_shown_but_not_followed(served: exports.Exports) -> None:
    fh = served.meta("j", "open", {"path": "in/f", "flags": os.O_RDONLY})["fh"]
    assert read(served, "j", fh, 0, 100) == b"inside\n"
    assert served.meta("j", "readlink", {"path": "in"})["target"] == "sub"
    names = [name for name, _ in served.meta("j", "list", {"path": ""})["entries"]]
    assert names == ["file", "in", "out", "rel-out", "secret-link", "sub"]
    served.meta("j", "unlink", {"path": "secret-link"})  # the link itself may go; its target stays
    assert (served_root(served).parent / "outside" / "secret").exists()


def test_reads_and_writes_at_offsets(served: exports.Exports) -> None:
    created = served.meta("j", "create", {"path": "sub/data", "flags": os.O_RDWR, "mode": 0o600})
    fh = created["fh"]
    assert served.write("j", fh, 0, b"hello world") == 11
    assert served.write("j", fh, 6, b"there") == 5
    assert read(served, "j", fh, 0, 100) == b"hello there"
    assert read(served, "j", fh, 6, 3) == b"the"
    app = served.meta("j", "open", {"path": "sub/data", "flags": os.O_WRONLY | os.O_APPEND})["fh"]
    served.write("j", app, 0, b"!")  # O_APPEND: at the end, whatever the offset
    assert (served_root(served) / "sub" / "data").read_bytes() == b"hello there!"
    assert served.meta("j", "setattr", {"path": "sub/data", "fh": fh, "size": 5})["size"] == 5
    served.meta("j", "release", {"fh": fh})
    with pytest.raises(OSError, match="no open file") as caught:
        read(served, "j", fh, 0, 1)
    assert caught.value.errno == errno.EBADF


def test_only_exported_jobs_are_served(served: exports.Exports) -> None:
    fh = served.meta("j", "open", {"path": "file", "flags": os.O_RDONLY})["fh"]
    with pytest.raises(exports.NotExported):
        served.meta("other", "stat", {"path": ""})
    with pytest.raises(OSError, match="no open file"):
        read(served, "other", fh, 0, 1)  # another job cannot use j's open files
    served.unexport("j")
    with pytest.raises(exports.NotExported):
        served.meta("j", "stat", {"path": "file"})
    with pytest.raises(OSError, match="no open file"):
        read(served, "j", fh, 0, 1)  # unexporting closed what was left open
    with pytest.raises(ValueError, match="no homefs operation"):
        exports.Exports().meta("j", "chown", {})


def test_confine_parts() -> None:
    assert confine.parts("a//b/./c") == ["a", "b", "c"]
    assert confine.parts("") == []
    for bad in ("/a", "a/../b", "..", "a\0"):
        with pytest.raises(confine.Escape):
            confine.parts(bad)


def test_what_the_container_gets_at_home(tmp_path: pathlib.Path) -> None:
    """At home the real directory is bound; a missing one, or one that would cover the container's root,
    /proc, /dev or /sys, is not; away from home without a TLS identity there is no mount but a clear error."""
    m = mounts.Mounter(url="https://127.0.0.2:7341")
    job = jobs.Job(name="j", args=("x",), workdir=str(tmp_path), home_url="https://127.0.0.2:7341")
    assert m.source(job, tmp_path / "jobdir") == tmp_path
    assert m.source(jobs.Job(name="j", args=("x",), workdir=str(tmp_path)), tmp_path) == tmp_path  # home: first node
    for workdir in ("/", "/proc", "/dev/shm", "/sys/fs", str(tmp_path / "missing")):
        assert m.source(dataclasses.replace(job, workdir=workdir), tmp_path / "jobdir") is None
    assert m.source(dataclasses.replace(job, workdir=None), tmp_path / "jobdir") is None
    away = dataclasses.replace(job, home_url="https://127.0.0.3:7341")
    with pytest.raises(errors.JobError, match="no TLS identity"):
        m.source(away, tmp_path / "jobdir")
    with pytest.raises(ValueError, match="https://"):
        jobs.Job(name="j", args=("x",), workdir="/w", home_url="http://127.0.0.3:7341")
    with pytest.raises(ValueError, match=r"without '\.\.'"):
        jobs.Job(name="j", args=("x",), workdir="/w/../etc")


def dirty_pages(path: pathlib.Path) -> tuple[int, int]:
    """(dirty, all) of the file's pages in the page cache, from the kernel's page flags (root only)."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size) as m, open("/proc/self/pagemap", "rb") as pagemap, \
                open("/proc/kpageflags", "rb") as kpageflags:
            first = ctypes.c_char.from_buffer(m)
            address = ctypes.addressof(first)
            dirty = 0
            for page in range(size // mmap.PAGESIZE):
                _ = m[page * mmap.PAGESIZE]  # mapped in
                pagemap.seek((address // mmap.PAGESIZE + page) * 8)
                (entry,) = struct.unpack("Q", pagemap.read(8))
                kpageflags.seek((entry & ((1 << 55) - 1)) * 8)
                (flags,) = struct.unpack("Q", kpageflags.read(8))
                dirty += flags >> 4 & 1  # KPF_DIRTY
            del first
            return dirty, size // mmap.PAGESIZE
    finally:
        os.close(fd)


@pytest.mark.root
def test_a_large_write_starts_its_way_to_disk() -> None:
    """A streaming writer's frames are on their way to the disk as they come, so its fsync waits for
    the last ones only. (On /var/tmp, a disk: tmpfs has no disk to write to.)"""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="mosix-test-", dir="/var/tmp"))
    try:
        e = exports.Exports()
        e.export("j", directory)
        big = e.meta("j", "create", {"path": "big", "flags": os.O_RDWR, "mode": 0o600})["fh"]
        small = e.meta("j", "create", {"path": "small", "flags": os.O_RDWR, "mode": 0o600})["fh"]
        e.write("j", big, 0, os.urandom(exports.WRITE_OUT_FROM))
        e.write("j", small, 0, os.urandom(exports.WRITE_OUT_FROM // 2))
        assert dirty_pages(directory / "big")[0] == 0  # written, or being written
        assert dirty_pages(directory / "small")[0] > 0  # a small write is left to the kernel
    finally:
        shutil.rmtree(directory)
