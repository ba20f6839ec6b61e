"""Free TCP ports for the servers tests start (agents on 127.0.0.N, registries, relays)."""

from __future__ import annotations

import socket


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on at `address` now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port
