"""Checkpoint sets on the wire: one tar stream (GNU tar, keeping xattrs and overlay whiteouts)
followed by the SHA-256 of the tar as 64 hex characters.

The sender streams tar's output as it is made (no copy of the set on disk), and appends the
digest; the receiver writes the stream to a root-only file, hashing all but the last 64 bytes,
and compares: a truncated or tampered transfer fails the check, and nothing is unpacked or
restored unless it passes. (A stop-and-copy migration's memory is not in it: it streams into the
target's CRIU page server, see pageserver.py.)
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
from typing import IO

from mosix.agent import errors

JOB_HEADER = "X-Mosix-Job"
TAR_FLAGS = ["--xattrs", "--xattrs-include=*", "--numeric-owner"]
CHUNK = 1 << 20
DIGEST_LEN = 64


class Sender:
    """Produces the stream for one set: tar's bytes, then their digest.

    `beside` names directories sent as members of the set under their own names without being
    copied into it first (a stop-and-copy migration sends the job's writable layer as `upper`).
    """

    def __init__(self, set_dir: pathlib.Path, beside: tuple[pathlib.Path, ...] = ()) -> None:
        members = [arg for d in beside for arg in ("-C", str(d.parent), d.name)]
        self._proc = subprocess.Popen(["tar", *TAR_FLAGS, "-cf", "-", "-C", str(set_dir), ".", *members],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._hash = hashlib.sha256()
        self._done = False
        self.sent = 0
        self.digest = ""

    def read(self) -> bytes:
        """The next piece of the stream (blocking); b"" at the end."""
        if self._done:
            return b""
        assert self._proc.stdout is not None
        chunk = self._proc.stdout.read(CHUNK)
        if chunk:
            self._hash.update(chunk)
            self.sent += len(chunk)
            return chunk
        self._done = True
        _, err = self._proc.communicate()
        if self._proc.returncode != 0:
            raise errors.AgentError(f"tar of the set failed: {err.decode(errors='replace').strip()}")
        self.digest = self._hash.hexdigest()
        return self.digest.encode()

    def close(self) -> None:
        """Stop tar if the stream was abandoned."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


class Receiver:
    """Writes a received stream to a 0600 file and checks its trailing digest."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        """Take the next piece; the last 64 bytes seen are held back as the claimed digest."""
        data = self._tail + chunk
        body, self._tail = data[:-DIGEST_LEN], data[-DIGEST_LEN:]
        if body:
            self._hash.update(body)
            self._file.write(body)

    def finish(self) -> str:
        """The digest of the tar; CheckpointError if the stream's own digest does not match it."""
        self._file.close()
        digest = self._hash.hexdigest()
        if self._tail != digest.encode():
            raise errors.CheckpointError("digest mismatch: transfer truncated or tampered; nothing restored")
        return digest


def unpack(tar_file: pathlib.Path, dest: pathlib.Path) -> None:
    """Unpack a received (already digest-checked) set into dest, an empty root-only directory."""
    proc = subprocess.run(["tar", *TAR_FLAGS, "--same-permissions", "-C", str(dest), "-xf", str(tar_file)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errors.CheckpointError(f"received set does not unpack: {proc.stderr.strip()}")
