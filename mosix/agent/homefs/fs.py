"""The FUSE filesystem on a node running a job away from home: every operation goes to the home agent.

Run as its own process per mount (pyfuse3 keeps one session per process):
    python -m mosix.agent.homefs.fs --url https://HOME:PORT --job NAME --tls-ca CA --tls-cert C --tls-key K DIR
Inodes are this side's numbers for paths; home holds the open files. Metadata goes one request per
operation (`remote`); reads and writes are frames on one data stream (`stream`), many in flight.
Writes are written behind, as NFS does: write(2) returns once the frame is on its way (at most WINDOW
bytes unanswered; small writes that follow each other are held up to HOLD seconds and go as one frame),
a failure at home is reported at the file's next write, flush (close) or fsync,
and everything is at home before close(2), fsync(2), any metadata operation (sizes are home's) and
the agent's drain (DRAIN, before a dump) return.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import pathlib
import sys
import time
from typing import Any

import pyfuse3
import trio

from mosix.agent import tls
from mosix.agent.homefs import readahead, remote, stream, wire

log = logging.getLogger("mosix.homefs")
TIMEOUT = 1.0  # seconds the kernel may trust names and attributes: the job is the directory's only writer
BLKSIZE = 1 << 17
WINDOW = 8 << 20  # bytes written behind at most (unanswered by home)
COALESCE = 1 << 18  # small writes following each other go home together, up to this many bytes
HOLD = 0.005  # seconds such writes wait for the next one at most
READ_ONLY = frozenset({"stat", "list", "readlink", "statfs", "open", "release"})  # leave read-ahead be
# The root as shown while home cannot be reached: a job restored meanwhile (its home node died) still
# has its working directory; what it opens there fails (EIO) until home is back.
UNREACHABLE_ROOT = {"mode": 0o40755, "nlink": 2, "uid": 0, "gid": 0, "size": 0, "rdev": 0, "blocks": 0,
                    "atime_ns": 0, "mtime_ns": 0, "ctime_ns": 0}


def _join(parent: str, name: bytes) -> str:
    n = os.fsdecode(name)
    return f"{parent}/{n}" if parent else n


class HomeFS(pyfuse3.Operations):
    """pyfuse3 operations forwarded to `remote.Remote`; errors come back as home's errno."""

    enable_writeback_cache = False  # written behind by us, not the kernel: `drain` reaches every write

    def __init__(self, home: remote.Remote, data: stream.Stream, root_mode: int = 0o40755) -> None:
        super().__init__()
        self.home = home
        self.data = data
        self.ahead = readahead.ReadAhead(data)
        self._errors: dict[int, int] = {}  # fh -> errno of a write behind that failed, not reported yet
        self._held: dict[int, tuple[int, bytearray]] = {}  # fh -> (offset, bytes): small writes not sent yet
        self._timer = False
        self._sending = trio.Lock()  # write frames go out in the order they were made (FIFO lock)
        self.nursery: trio.Nursery | None = None  # (set by `serve`) where held writes are sent after HOLD
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
        await self._send_held()
        await self.data.settle()

    async def _send_held(self) -> None:
        """Send the small writes held back (all files: a held write's failure is reported like any), and
        wait for write frames on their way out: a frame put on the stream after this one comes after them."""
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
        await self._send_held()

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

    def _inode(self, path: str) -> int:
        ino = self.inodes.get(path)
        if ino is None:
            ino = self._next
            self._next += 1
            self.inodes[path] = ino
            self.paths[ino] = path
        return ino

    def _entry(self, path: str, a: dict[str, int]) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = pyfuse3.InodeT(self._inode(path))
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
                return self._entry(path, self.home.meta("stat", path=path))
            except remote.RemoteError as e:
                if e.errno != errno.EIO:
                    raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
                return self._entry(path, self.unreachable_root)  # home is away: an empty directory, not a dead mount
        return self._entry(path, await self._call("stat", path=path))

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
            args["mtime_ns"] = attr.st_mtime_ns
        return self._entry(path, await self._call("setattr", **args))

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
        path = self._path(inode)
        await self._settle()
        try:
            entries = self.home.meta("list", path=path)["entries"]
        except remote.RemoteError as e:
            if e.errno != errno.EIO or inode != pyfuse3.ROOT_INODE:
                raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
            entries = []  # home away: the stand-in root is empty
        self._dirs[inode] = [(path, e) for e in entries]
        return pyfuse3.FileHandleT(inode)

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        for i, (parent, (name, a)) in enumerate(self._dirs.get(fh, [])[start_id:], start_id):
            encoded = pyfuse3.FileNameT(os.fsencode(name))
            if not pyfuse3.readdir_reply(token, encoded, self._entry(_join(parent, encoded), a), i + 1):
                break

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
        fh = (await self._call("open", path=self._path(inode), flags=flags))["fh"]
        # Close-to-open, as NFS: attributes cached before this open are forgotten, so the size and the
        # pages (the kernel drops them when the mtime it then gets is new) are home's as of now.
        pyfuse3.invalidate_inode(pyfuse3.InodeT(inode), attr_only=True)
        if flags & os.O_TRUNC:
            self.ahead.forget()  # the file is emptied: what other handles fetched of it is gone
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh))

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = _join(self._path(parent_inode), name)
        r = await self._call("create", path=path, flags=flags, mode=mode)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(r["fh"])), self._entry(path, r["attrs"])

    async def read(self, fh: int, off: int, size: int) -> bytes:
        await self._send_held()  # read what was written
        try:
            return await self.ahead.read(fh, off, size)
        except remote.RemoteError as e:
            log.warning("read %d at %d: %s", fh, off, e)
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self._report(fh)
        self.ahead.forget()  # fetched before this write: never to be read after it
        held = self._held.get(fh)
        if held is not None and held[0] + len(held[1]) == off and len(held[1]) + len(buf) <= COALESCE:
            held[1].extend(buf)
            return len(buf)
        await self._send_held()
        if len(buf) < COALESCE // 4 and self.nursery is not None:
            self._held[fh] = (off, bytearray(buf))
            if not self._timer:
                self._timer = True
                self.nursery.start_soon(self._send_later)
            return len(buf)
        try:
            await self._send(fh, off, buf)
        except remote.RemoteError as e:
            self._errors.pop(fh, None)  # reported now
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
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
        await self._send_held()
        try:
            await self.data.call(op, fh, offset)
        except remote.RemoteError as e:
            self._errors.pop(fh, None)
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        self._report(fh)

    async def flush(self, fh: int) -> None:
        await self._sync(wire.Op.BARRIER, fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._sync(wire.Op.FSYNC, fh, 1 if datasync else 0)

    async def release(self, fh: int) -> None:
        await self._send_held()
        self._errors.pop(fh, None)  # nobody left to tell
        self.ahead.forget(fh)
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
        trio.run(serve, fs)
    finally:
        pyfuse3.close(unmount=False)
        home.close()
    return 0


async def serve(fs: HomeFS) -> None:
    """Answer FUSE requests until unmounted, then let the last writes reach home."""
    try:
        async with trio.open_nursery() as nursery:
            fs.nursery = nursery
            await pyfuse3.main()
            await fs.drain()
            nursery.cancel_scope.cancel()
    finally:
        fs.data.close()


if __name__ == "__main__":
    sys.exit(main())
