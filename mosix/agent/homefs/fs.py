"""The FUSE filesystem on a node running a job away from home: every operation goes to the home agent.

Run as its own process per mount (pyfuse3 keeps one session per process):
    python -m mosix.agent.homefs.fs --url https://HOME:PORT --job NAME --tls-ca CA --tls-cert C --tls-key K DIR
Inodes are this side's numbers for paths; home holds the open files. Metadata goes one request per
operation (`remote`); reads and writes are frames on one data stream (`stream`), many in flight.

Writes go through the kernel's writeback cache: write(2) returns once the bytes are in this node's page
cache, and the kernel sends them on in large requests (a 4 KiB writer costs a frame per MiB, not per
write). Those are written behind again, as NFS does: answered once the frame is on its way (at most
WINDOW bytes unanswered); a failure at home is reported at the file's next flush (close) or fsync, and
everything is at home before close(2), fsync(2), any metadata operation (sizes are home's) and the
agent's drain (a syncfs of the mount, then DRAIN, before a dump) return. Appends (O_APPEND) skip the
cache: home places each at its end, whoever else appends there (small ones that follow each other are
held up to HOLD seconds and go as one frame). The kernel owns a cached file's size: a
file changed at home by someone else (not written here since its last flush or fsync, nor open here) is
shown under a new inode number at the next lookup or open (the open answers ESTALE, so the kernel looks the name up
again), which keeps close-to-open. While a file is open for writing, what the kernel caches goes home
every FLUSH_EVERY seconds (`write_back`).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import pathlib
import stat
import sys
import time
from typing import Any

import pyfuse3
import trio

from mosix.agent import tls
from mosix.agent.homefs import readahead, remote, stream, syscalls, wire

log = logging.getLogger("mosix.homefs")
TIMEOUT = 1.0  # seconds the kernel may trust names and attributes: the job is the directory's only writer
BLKSIZE = 1 << 17
WINDOW = 8 << 20  # bytes written behind at most (unanswered by home)
FLUSH_EVERY = 0.1  # seconds dirty pages wait in the kernel at most while a file is open for writing
COALESCE = 1 << 18  # small writes following each other (appends: not cached) go home together, up to this
HOLD = 0.005  # seconds such writes wait for the next one at most
# The root as shown while home cannot be reached: a job restored meanwhile (its home node died) still
# has its working directory; what it opens there fails (EIO) until home is back.
UNREACHABLE_ROOT = {"mode": 0o40755, "nlink": 2, "uid": 0, "gid": 0, "size": 0, "rdev": 0, "blocks": 0,
                    "atime_ns": 0, "mtime_ns": 0, "ctime_ns": 0}


def _at_home(flags: int) -> int:
    """The flags home opens a file with. Appends skip the kernel's cache (`_file`): home places them, at
    its end of the file, whoever else appends there. Other writes go through it, and the kernel's
    writeback may read what it writes (partial pages), so write-only is read-write at home."""
    if not flags & os.O_APPEND and (flags & os.O_ACCMODE) == os.O_WRONLY:
        flags = flags & ~os.O_ACCMODE | os.O_RDWR
    return flags


def _file(fh: int, flags: int) -> pyfuse3.FileInfo:
    """The kernel's handle: direct (no page cache) for appends, so each reaches home as written, and home's
    O_APPEND puts it at the end there (a cached append would go at the kernel's idea of the end)."""
    return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), direct_io=bool(flags & os.O_APPEND))


def _join(parent: str, name: bytes) -> str:
    n = os.fsdecode(name)
    return f"{parent}/{n}" if parent else n


class HomeFS(pyfuse3.Operations):
    """pyfuse3 operations forwarded to `remote.Remote`; errors come back as home's errno."""

    enable_writeback_cache = True  # small writes batched by the kernel; `drain` is a syncfs first

    def __init__(self, home: remote.Remote, data: stream.Stream, root_mode: int = 0o40755) -> None:
        super().__init__()
        self.home = home
        self.data = data
        self.ahead = readahead.ReadAhead(data)
        self._errors: dict[int, int] = {}  # fh -> errno of a write behind that failed, not reported yet
        self._sending = trio.Lock()  # write frames go out in the order they were made (FIFO lock)
        self._held: dict[int, tuple[int, bytearray]] = {}  # fh -> (offset, bytes): small writes not sent yet
        self._timer = False
        self.nursery: trio.Nursery | None = None  # (set by `serve`) where held writes are sent after HOLD
        self._files: dict[int, int] = {}  # fh -> inode, of the files open here
        self._writable: set[int] = set()  # the handles among them open for writing
        self._appending: set[int] = set()  # the handles among them that append (home places their writes)
        self._known: dict[int, tuple[int, int]] = {}  # inode -> home's (size, mtime) as the kernel has the file
        self._written: set[int] = set()  # inodes written since their last flush or fsync (_known is behind)
        self._mtimes: dict[int, int] = {}  # inode -> its mtime as the kernel has it (it sets them itself)
        self._fresh: set[int] = set()  # inodes numbered since their last open: the kernel's copy is current
        self.unreachable_root = {**UNREACHABLE_ROOT, "mode": root_mode}
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: ""}
        self.inodes: dict[str, int] = {"": pyfuse3.ROOT_INODE}
        self._next = pyfuse3.ROOT_INODE + 1
        self._dirs: dict[int, list[Any]] = {}

    # --- helpers ---------------------------------------------------------------------------

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        await self._settle()
        try:
            return self.home.meta(op, **args)
        except remote.RemoteError as e:
            if e.errno == errno.EIO:
                log.warning("%s %s: %s", op, args.get("path", args.get("fh")), e)
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None

    async def drain(self) -> None:
        """Every write made so far at home (or failed there)."""
        await self._settle()

    async def _settle(self) -> None:
        """Every write behind answered by home (so what home says about sizes and times is current)."""
        await self._sent()
        await self.data.settle()

    async def _sent(self) -> None:
        """Send the small writes held back (all files: a held write's failure is reported like any), and
        wait for write frames on their way out: a frame put on the stream after this comes after them."""
        while self._held:
            fh, (off, buf) = self._held.popitem()
            try:
                await self._send(fh, off, bytes(buf))
            except remote.RemoteError as e:
                self._errors.setdefault(fh, e.errno or errno.EIO)
        async with self._sending:
            pass

    async def _send_later(self) -> None:
        await trio.sleep(HOLD)
        self._timer = False
        await self._sent()

    def _report(self, fh: int) -> None:
        """Raise the error of a write behind on fh, once (as NFS reports it at close or fsync)."""
        err = self._errors.pop(fh, None)
        if err:
            raise pyfuse3.FUSEError(err)

    def _path(self, inode: int) -> str:
        try:
            return self.paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None

    def _inode(self, path: str, a: dict[str, int]) -> int:
        """The inode number of path, a new one if home's file changed behind the kernel's cached copy."""
        ino = self.inodes.get(path)
        if ino is None or self._changed(ino, a):
            ino = self._next
            self._next += 1
            self.inodes[path] = ino
            self.paths[ino] = path
            self._known[ino] = (a["size"], a["mtime_ns"])
            self._mtimes[ino] = a["mtime_ns"]
            self._fresh.add(ino)
        return ino

    def _changed(self, ino: int, a: dict[str, int]) -> bool:
        """Whether home's file (attributes a) is not what the kernel holds of inode ino, not written here
        since its last flush (so the kernel's size and pages of it are those it had when last known), nor
        open here: a file a process holds keeps its number while it does (CRIU dumps an open file only if
        its path still leads to that inode, and home's appends leave the kernel's size behind)."""
        known = self._known.get(ino)
        return (known is not None and known != (a["size"], a["mtime_ns"]) and stat.S_ISREG(a["mode"])
                and ino not in self._written and ino not in self._files.values())

    def _entry(self, path: str, a: dict[str, int], ino: int | None = None) -> pyfuse3.EntryAttributes:
        """Attributes for the kernel: of inode ino, or of the one path has now (numbered anew if it changed)."""
        e = pyfuse3.EntryAttributes()
        e.st_ino = pyfuse3.InodeT(self._inode(path, a) if ino is None else ino)
        e.generation = 0
        e.entry_timeout = e.attr_timeout = TIMEOUT
        for k in ("mode", "nlink", "uid", "gid", "size", "rdev", "blocks"):
            setattr(e, f"st_{k}", a[k])
        e.st_atime_ns, e.st_mtime_ns, e.st_ctime_ns = a["atime_ns"], a["mtime_ns"], a["ctime_ns"]
        e.st_blksize = BLKSIZE
        return e

    def _moved(self, old: str, new: str) -> None:
        for path in [p for p in self.inodes if p == old or p.startswith(old + "/")]:
            ino = self.inodes.pop(path)
            moved = new + path[len(old):]
            self.inodes[moved] = ino
            self.paths[ino] = moved

    # --- names and attributes --------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if parent_inode == pyfuse3.ROOT_INODE and name == wire.DRAIN:
            await self._settle()
            if self._errors:  # a job dumped now would never learn of them: refuse, it runs on here
                raise pyfuse3.FUSEError(errno.EIO)
            raise pyfuse3.FUSEError(errno.ENOENT)
        path = _join(self._path(parent_inode), name)
        return self._entry(path, await self._call("stat", path=path))

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        if inode == pyfuse3.ROOT_INODE:
            await self._settle()
            try:
                return self._entry(path, self.home.meta("stat", path=path), inode)
            except remote.RemoteError as e:
                if e.errno != errno.EIO:
                    raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
                return self._entry(path, self.unreachable_root, inode)  # home away: an empty dir, not a dead mount
        return self._entry(path, await self._call("stat", path=path), inode)

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: int | None, ctx: Any) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        args: dict[str, Any] = {"path": path, "fh": fh}
        if fields.update_size:
            args["size"] = attr.st_size
        if fields.update_mode:
            args["mode"] = attr.st_mode
        if fields.update_atime:
            args["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            args["mtime_ns"] = self._mtimes[inode] = attr.st_mtime_ns
        a = await self._call("setattr", **args)
        if stat.S_ISREG(a["mode"]):
            self._known[inode] = (a["size"], a["mtime_ns"])  # the kernel set them itself: they are its own
        return self._entry(path, a, inode)

    async def readlink(self, inode: int, ctx: Any) -> pyfuse3.FileNameT:
        return pyfuse3.FileNameT(os.fsencode((await self._call("readlink", path=self._path(inode)))["target"]))

    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        await self._settle()
        try:
            s = self.home.meta("statfs", path="")
        except remote.RemoteError as e:
            if e.errno != errno.EIO:
                raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
            s = {"bsize": 4096, "frsize": 4096, "namemax": 255}  # home away: an empty filesystem (CRIU asks)
        out = pyfuse3.StatvfsData()
        for k, v in s.items():
            setattr(out, f"f_{k}", v)
        return out

    # --- directories -----------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: Any) -> pyfuse3.FileHandleT:
        self._path(inode)
        return pyfuse3.FileHandleT(inode)  # listed at the first readdir (the drain's syncfs opens the root)

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        if start_id == 0 or fh not in self._dirs:
            self._dirs[fh] = await self._list(fh)
        for i, (parent, (name, a)) in enumerate(self._dirs[fh][start_id:], start_id):
            encoded = pyfuse3.FileNameT(os.fsencode(name))
            if not pyfuse3.readdir_reply(token, encoded, self._entry(_join(parent, encoded), a), i + 1):
                break

    async def _list(self, inode: int) -> list[Any]:
        path = self._path(inode)
        await self._settle()
        try:
            entries = self.home.meta("list", path=path)["entries"]
        except remote.RemoteError as e:
            if e.errno != errno.EIO or inode != pyfuse3.ROOT_INODE:
                raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
            entries = []  # home away: the stand-in root is empty
        return [(path, e) for e in entries]

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        path = _join(self._path(parent_inode), name)
        return self._entry(path, await self._call("mkdir", path=path, mode=mode))

    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        path = _join(self._path(parent_inode), name)
        return self._entry(path, await self._call("symlink", path=path, target=os.fsdecode(target)))

    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self._call("unlink", path=_join(self._path(parent_inode), name))

    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self._call("rmdir", path=_join(self._path(parent_inode), name))

    async def rename(self, parent_inode_old: int, name_old: Any, parent_inode_new: int,  # noqa: PLR0917
                     name_new: Any, flags: int, ctx: Any) -> None:  # names: bytes, whatever the stub says
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)  # RENAME_NOREPLACE / EXCHANGE: not forwarded
        old = _join(self._path(parent_inode_old), name_old)
        new = _join(self._path(parent_inode_new), name_new)
        await self._call("rename", path=old, new=new)
        self._moved(old, new)

    # --- files -----------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        r = await self._call("open", path=self._path(inode), flags=_at_home(flags))
        fh, a = r["fh"], r["attrs"]
        if inode in self._fresh or flags & os.O_TRUNC:  # the kernel's copy is home's as of the lookup (or emptied)
            self._fresh.discard(inode)
        elif self._changed(inode, a):
            # Close-to-open, as NFS: changed at home since the kernel cached it. The kernel keeps its own
            # size under a writeback cache, so the file gets a new number: ESTALE makes it look again.
            await self._call("release", fh=fh)
            path = self._path(inode)
            if self.inodes.get(path) == inode:  # (not numbered anew by a lookup meanwhile)
                del self.inodes[path]
            raise pyfuse3.FUSEError(errno.ESTALE)
        self._opened(fh, inode, flags)
        if flags & os.O_TRUNC:
            self.ahead.forget()  # the file is emptied: what other handles fetched of it is gone
        return _file(fh, flags)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = _join(self._path(parent_inode), name)
        r = await self._call("create", path=path, flags=_at_home(flags), mode=mode)
        self.inodes.pop(path, None)  # a new file: a new inode, whatever the kernel kept of an old one
        entry = self._entry(path, r["attrs"])
        self._fresh.discard(entry.st_ino)
        self._opened(r["fh"], entry.st_ino, flags)
        return _file(r["fh"], flags), entry

    @property
    def writing(self) -> bool:
        """Whether a file is open for writing (so the kernel may hold pages not sent yet)."""
        return bool(self._writable)

    def _opened(self, fh: int, inode: int, flags: int) -> None:
        self._files[fh] = inode
        if flags & os.O_ACCMODE != os.O_RDONLY:
            self._writable.add(fh)
        if flags & os.O_APPEND:
            self._appending.add(fh)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        await self._sent()  # read what was written
        try:
            return await self.ahead.read(fh, off, size)
        except remote.RemoteError as e:
            log.warning("read %d at %d: %s", fh, off, e)
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        """Written behind: a failure (here or at home) is the job's at the next flush or fsync of fh (the
        kernel's writeback sends this, not the job's write(2), and a failure raised here would be the
        kernel's to report, past the agent's drain)."""
        self.ahead.forget()  # fetched before this write: never to be read after it
        if fh in self._files:
            self._written.add(self._files[fh])
        held = self._held.get(fh)
        if held is not None and held[0] + len(held[1]) == off and len(held[1]) + len(buf) <= COALESCE:
            held[1].extend(buf)
            return len(buf)
        await self._sent()
        if len(buf) < COALESCE // 4 and self.nursery is not None:
            self._held[fh] = (off, bytearray(buf))
            if not self._timer:
                self._timer = True
                self.nursery.start_soon(self._send_later)
            return len(buf)
        try:
            await self._send(fh, off, buf)
        except remote.RemoteError as e:
            self._errors.setdefault(fh, e.errno or errno.EIO)
        return len(buf)

    async def _send(self, fh: int, off: int, buf: bytes) -> None:
        """A write frame, once the window has room; its failure at home is kept for fh."""
        size = len(buf)

        def on_reply(err: int, written: int, _: bytes) -> None:
            if err or written != size:
                log.warning("write %d at %d: %s", fh, off, errno.errorcode.get(err, err) if err else "short")
                self._errors.setdefault(fh, err or errno.EIO)

        async with self._sending:
            await self.data.settle(max(0, WINDOW - size))
            await self.data.send(wire.Op.WRITE, fh, off, size, buf, on_reply=on_reply)

    async def _sync(self, op: wire.Op, fh: int, offset: int = 0) -> None:
        """A frame answered once home has done every frame before it; then any write error on fh."""
        await self._sent()
        try:
            await self.data.call(op, fh, offset)
        except remote.RemoteError as e:
            self._errors.pop(fh, None)
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        self._report(fh)

    async def flush(self, fh: int) -> None:
        try:
            await self._sync(wire.Op.BARRIER, fh)
        finally:
            await self._flushed(fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        try:
            await self._sync(wire.Op.FSYNC, fh, 1 if datasync else 0)
        finally:
            await self._flushed(fh)

    async def _flushed(self, fh: int) -> None:
        """The kernel sent every write of fh's file before this flush or fsync: home's size of it is now
        the kernel's, and so is its mtime once home is given the kernel's (writes that came after the
        kernel last sent it, within the same tick of its clock, left home's later)."""
        inode = self._files.get(fh)
        if inode not in self._written:
            return
        self._written.discard(inode)
        if fh in self._appending:  # home placed the appends: the kernel's size may be short of home's
            self._known[inode] = (-1, -1)  # so the file is numbered anew once nothing writes it here
            return
        try:
            path = self._path(inode)
            a = self.home.meta("stat", path=path)
            mtime = self._mtimes.get(inode)
            if mtime is not None and a["mtime_ns"] != mtime:
                a = self.home.meta("setattr", path=path, mtime_ns=mtime)
        except (remote.RemoteError, pyfuse3.FUSEError):
            self._known.pop(inode, None)  # not known: not renumbered either
            return
        self._known[inode] = (a["size"], a["mtime_ns"])

    async def release(self, fh: int) -> None:
        await self._sent()
        self._errors.pop(fh, None)  # nobody left to tell
        self.ahead.forget(fh)
        self._files.pop(fh, None)
        self._writable.discard(fh)
        self._appending.discard(fh)
        await self._call("release", fh=fh)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mosix.agent.homefs.fs", description=__doc__)
    p.add_argument("--url", required=True, help="the home agent, https://HOST:PORT")
    p.add_argument("--job", required=True, help="the job's container name")
    p.add_argument("--tls-ca", type=pathlib.Path, required=True)
    p.add_argument("--tls-cert", type=pathlib.Path, required=True)
    p.add_argument("--tls-key", type=pathlib.Path, required=True)
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for home to serve the directory")
    p.add_argument("--root-mode", type=lambda v: int(v, 0), default=0o40755,
                   help="st_mode the root shows while home is unreachable (the directory's at home: CRIU checks it)")
    p.add_argument("mountpoint", type=pathlib.Path)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s homefs %(levelname)s %(message)s")
    context = tls.client_context(tls.Identity(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key))
    home = remote.Remote(args.url, args.job, context)
    deadline = time.monotonic() + args.wait
    while True:  # home may export the directory a moment after the job was placed here
        try:
            home.meta("stat", path="")
            break
        except remote.RemoteError as e:
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            if e.errno != errno.EIO:  # home answers, and refuses: not this job's home, or the job is gone
                print(f"homefs: {args.url} does not serve {args.job}'s working directory: {e}", file=sys.stderr)
                return 1
            log.warning("home %s unreachable (%s): mounting anyway, its files fail until it is back", args.url, e)
            break
    data = stream.Stream(home.host, home.port, args.job, context)
    fs = HomeFS(home, data, args.root_mode)
    options = set(pyfuse3.default_options) | {"fsname=mosix-home", "subtype=mosix", "allow_other"}
    pyfuse3.init(fs, str(args.mountpoint), options)
    try:
        trio.run(serve, fs, args.mountpoint)
    finally:
        pyfuse3.close(unmount=False)
        home.close()
    return 0


async def serve(fs: HomeFS, mountpoint: pathlib.Path) -> None:
    """Answer FUSE requests until unmounted, then let the last writes reach home."""
    try:
        async with trio.open_nursery() as nursery:
            fs.nursery = nursery
            nursery.start_soon(write_back, fs, mountpoint)
            await pyfuse3.main()
            await fs.drain()
            nursery.cancel_scope.cancel()
    finally:
        fs.data.close()


async def write_back(fs: HomeFS, mountpoint: pathlib.Path) -> None:
    """While a file is open for writing, send what the kernel caches of it home every FLUSH_EVERY seconds
    (the kernel's own writeback waits 30 s): a job's lines show at home as they are written."""
    try:
        device = (await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)).st_dev  # (after INIT)
    except OSError as e:
        log.warning("%s: no write-back (%s)", mountpoint, e)
        return
    while True:
        await trio.sleep(FLUSH_EVERY)
        if fs.writing:
            await trio.to_thread.run_sync(_syncfs, mountpoint, device, abandon_on_cancel=True)


def _syncfs(mountpoint: pathlib.Path, device: int) -> None:
    """syncfs(2) of this mount, if the path still leads to it (not after a lazy unmount)."""
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if os.fstat(fd).st_dev == device:
            syscalls.syncfs(fd, mountpoint)
    except OSError as e:
        log.warning("%s", e)
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
