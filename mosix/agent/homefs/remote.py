"""The FUSE side's link to the home agent for metadata: one kept-alive mutual-TLS connection, one
request per file operation (file data goes on the data stream, `stream`)."""

from __future__ import annotations

import errno
import http.client
import json
import ssl
import urllib.parse
from typing import Any

RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


class RemoteError(OSError):
    """The home agent answered a file operation with an errno (or could not be reached: EIO)."""


class Remote:
    """The home agent's homefs API for one job."""

    def __init__(self, url: str, job: str, context: ssl.SSLContext, timeout: float = 60) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname or not parsed.port:
            raise ValueError(f"home agent URL {url!r}: need https://host:port")
        self.host, self.port = parsed.hostname, parsed.port
        self.base = f"/homefs/{urllib.parse.quote(job, safe='')}"
        self.context = context
        self.timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                                         timeout=self.timeout)
            try:
                self._conn.request(method, self.base + path, body=body,
                                   headers={"Content-Type": "application/octet-stream"})
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except RETRYABLE as e:  # the kept-alive connection was closed by the server: once more
                self.close()
                if attempt == 2:
                    raise RemoteError(errno.EIO, f"home agent {self.host}: {e}") from e
            except OSError as e:
                self.close()
                raise RemoteError(errno.EIO, f"home agent {self.host}: {e}") from e
        raise AssertionError("unreachable")

    @staticmethod
    def _check(status: int, data: bytes) -> None:
        if status == 200:
            return
        try:
            body = json.loads(data)
        except ValueError:
            body = {}
        raise RemoteError(int(body.get("errno") or errno.EIO), str(body.get("error") or f"HTTP {status}"))

    def meta(self, op: str, **args: Any) -> dict[str, Any]:
        """A metadata operation at home; RemoteError carries home's errno."""
        status, data = self._request("POST", "/meta", json.dumps({"op": op, "args": args}).encode())
        self._check(status, data)
        result: dict[str, Any] = json.loads(data)
        return result

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
