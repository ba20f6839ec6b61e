"""The frames of a homefs data stream: one TLS connection per mount to home's data port carries the
FUSE side's reads and writes, answered in order on the same connection (so a chunk costs a frame,
not a request, and many are in flight at once).

    request frame:  op (u8), id (u32), fh (u64), offset (u64), size (u32), then `size` bytes for WRITE
    reply frame:    id (u32), errno (i32: 0 or home's), value (u64), size (u32), then `size` bytes

Home carries out the frames of one stream one after another, in order, and answers each: WRITE with
the bytes written as its value, READ (at most `size` bytes) with the bytes as payload, FSYNC (offset 1:
fdatasync) with nothing; BARRIER does nothing, so its answer means every frame before it is done.
"""

from __future__ import annotations

import enum
import struct

MAX_IO = 1 << 20
# Looking this name up in a mount's root returns (ENOENT) once every write behind is home, or fails
# (EIO) if one failed: the agent's drain before a dump. No such file is ever shown.
DRAIN = b".mosix-drain"
REQUEST = struct.Struct("!BIQQI")
REPLY = struct.Struct("!IiQI")


class Op(enum.IntEnum):
    WRITE = 1
    READ = 2
    FSYNC = 3
    BARRIER = 4


def request(op: Op, rid: int, fh: int, offset: int, size: int) -> bytes:
    """A request frame's header."""
    return REQUEST.pack(op, rid, fh, offset, size)


def reply(rid: int, err: int, value: int, size: int) -> bytes:
    """A reply frame's header."""
    return REPLY.pack(rid, err, value, size)
