"""Sequential reads of open files fetched ahead from home, so the kernel's read requests (128 KiB to
1 MiB, a few at a time) find their bytes here instead of each waiting for a round trip.

A file read sequentially (each read near where the last ended: the kernel asks for several chunks at
once, and they may be answered in any order) gets AHEAD chunks of CHUNK bytes in flight past the
reader; a read far away drops them. Whatever is fetched is forgotten on any write or change through
the mount (`forget`), so a read never returns bytes older than a write made here; changes made at
home by others are seen at the next open (close-to-open, as NFS).
"""

from __future__ import annotations

import errno

import trio

from mosix.agent.homefs import remote, stream, wire

CHUNK = wire.MAX_IO
AHEAD = 4


class _Fetch:
    """One chunk asked of home."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.err = 0
        self.data = b""

    def answer(self, err: int, _: int, data: bytes) -> None:
        self.err, self.data = err, data
        self.done.set()


class ReadAhead:
    """The chunks fetched ahead per open file handle."""

    def __init__(self, data: stream.Stream) -> None:
        self.data = data
        self._chunks: dict[int, dict[int, _Fetch]] = {}  # fh -> chunk offset -> fetch
        self._next: dict[int, int] = {}  # fh -> where a sequential reader of it reads next

    def forget(self, fh: int | None = None) -> None:
        """Drop what was fetched for fh (None: for every file)."""
        if fh is None:
            self._chunks.clear()
            self._next.clear()
        else:
            self._chunks.pop(fh, None)
            self._next.pop(fh, None)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        """Up to size bytes at off (fewer only at the end of the file); RemoteError carries home's errno."""
        last = self._next.get(fh, 0)
        if abs(off - last) > AHEAD * CHUNK:  # not sequential: no guessing
            self.forget(fh)
            self._next[fh] = off + size
            _, data = await self.data.call(wire.Op.READ, fh, off, size)
            return data
        self._next[fh] = max(last, off + size)  # now: the kernel's next request may come before this answer
        chunks = self._chunks.setdefault(fh, {})
        await self._ahead(fh, chunks, off)
        pieces, pos, end = [], off, off + size
        while pos < end:
            start = pos - pos % CHUNK
            fetch = chunks.get(start) or await self._fetch(fh, chunks, start)
            with trio.move_on_after(self.data.timeout):
                await fetch.done.wait()
            if not fetch.done.is_set() or fetch.err:
                self.forget(fh)
                raise remote.RemoteError(fetch.err or errno.EIO, f"read ahead at {start}")
            piece = fetch.data[pos - start:end - start]
            pieces.append(piece)
            pos += len(piece)
            if len(fetch.data) < CHUNK:
                break  # the end of the file (as it was when fetched)
        if self._chunks.get(fh) is chunks:  # not forgotten meanwhile
            for start in [s for s in chunks if s + CHUNK <= off]:
                del chunks[start]
            await self._ahead(fh, chunks, self._next[fh])
        return b"".join(pieces)

    async def _ahead(self, fh: int, chunks: dict[int, _Fetch], pos: int) -> None:
        start = pos - pos % CHUNK
        for i in range(AHEAD):
            at = start + i * CHUNK
            fetch = chunks.get(at)
            if fetch is None:
                fetch = await self._fetch(fh, chunks, at)
            if fetch.done.is_set() and len(fetch.data) < CHUNK:
                break  # nothing beyond the end

    async def _fetch(self, fh: int, chunks: dict[int, _Fetch], start: int) -> _Fetch:
        fetch = chunks[start] = _Fetch()
        try:
            await self.data.send(wire.Op.READ, fh, start, CHUNK, b"", on_reply=fetch.answer)
        except remote.RemoteError as e:  # not sent: its reader is told, not left waiting
            fetch.answer(e.errno or errno.EIO, 0, b"")
        return fetch
