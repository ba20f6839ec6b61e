"""The Linux calls homefs needs that the os module does not offer: syncfs(2) and sync_file_range(2)."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
_SYNC_FILE_RANGE_WRITE = 2


def syncfs(fd: int, name: object) -> None:
    """Write back the dirty pages of the filesystem holding fd and wait for them; OSError naming `name`."""
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs {name}: {os.strerror(err)}")


def write_out(fd: int, offset: int, size: int) -> None:
    """Start writing the range to disk, without waiting (a hint: a failure shows at fsync)."""
    _libc.sync_file_range(fd, offset, size, _SYNC_FILE_RANGE_WRITE)
