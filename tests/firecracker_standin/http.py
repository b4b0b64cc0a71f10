"""Firecracker's HTTP transport (``micro_http``) on the API's Unix socket.

HTTP/1.0 and 1.1 requests (``GET``, ``PUT``, ``PATCH``, ``DELETE``), kept alive, a body only
with ``Content-Length`` (at most ``--http-api-max-payload-size``, 51200 bytes by default).
Responses as ``micro_http`` writes them: ``HTTP/1.1 <code> `` (no reason phrase),
``Server: Firecracker API``, ``Connection: keep-alive``, ``Content-Type`` and
``Content-Length`` only with a body, ``Deprecation: true`` for deprecated fields. At most 10
connections are open: the 11th is told ``503`` and closed. A request ``micro_http`` cannot
parse is answered ``400`` with its ``{ "error": ... }`` text and the connection closed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = ["MAX_PAYLOAD", "ApiServer", "Request", "Response"]

MAX_PAYLOAD = 51200
_MAX_CONNECTIONS = 10
_MAX_LINE = 1024
_SERVER_FULL = (
    b"HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Length: 40\r\n\r\n"
    b'{ "error": "Too many open connections" }'
)
_METHODS = ("GET", "PUT", "PATCH", "DELETE")
_SUN_PATH_MAX = 107


@dataclass
class Request:
    """One parsed request; ``body`` is ``None`` without ``Content-Length`` (or with 0)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Response:
    """What to answer: ``body`` is JSON text, ``None`` for ``204``."""

    status: int
    body: bytes | None = None
    deprecated: bool = False

    def encode(self) -> bytes:
        head = f"HTTP/1.1 {self.status} \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
        if self.deprecated:
            head += "Deprecation: true\r\n"
        if self.body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        return head.encode() + b"\r\n" + (self.body or b"")


class _ParseError(Exception):
    """``micro_http``'s ``RequestError``: the request cannot be read."""


Handler = Callable[[Request], Response]


class ApiServer:
    """The listening API socket.

    Args:
        path: ``--api-sock``.
        handler: Called for each request (one at a time per connection).
        on_parse_error: Told the text of each request that could not be parsed.
        max_payload: ``--http-api-max-payload-size``.

    Raises:
        OSError: The socket cannot be bound (``EADDRINUSE`` if the path exists).
        ValueError: The path is too long for a Unix socket.
    """

    def __init__(
        self, path: str, handler: Handler, on_parse_error: Callable[[str], None], max_payload: int = MAX_PAYLOAD
    ) -> None:
        if len(path.encode()) > _SUN_PATH_MAX:
            raise ValueError("path must be shorter than SUN_LEN")
        self.path, self._handler, self._on_parse_error = path, handler, on_parse_error
        self._max_payload = max_payload
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(path)
            self._listener.listen(socket.SOMAXCONN)
        except OSError:
            self._listener.close()
            raise
        self._open = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Serve in the background (daemon threads)."""
        threading.Thread(target=self._accept, name="fc_api", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                full = self._open >= _MAX_CONNECTIONS
                if not full:
                    self._open += 1
            if full:
                with contextlib.suppress(OSError):
                    connection.sendall(_SERVER_FULL)
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection,), name="fc_api_conn", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection, connection.makefile("rb") as reader:
                while True:
                    try:
                        request = self._read(reader, connection)
                    except _ParseError as exc:
                        self._on_parse_error(str(exc))
                        text = f'{{ "error": "{exc}\nAll previous unanswered requests will be dropped." }}'
                        connection.sendall(Response(400, text.encode()).encode())
                        return
                    if request is None:
                        return
                    connection.sendall(self._handler(request).encode())
        except OSError:
            pass  # the client went away
        finally:
            with self._lock:
                self._open -= 1

    def _read(self, reader: BinaryIO, connection: socket.socket) -> Request | None:
        line = _line(reader)
        if line is None:
            return None
        parts = line.split(" ")
        if len(parts) != 3:
            raise _ParseError("Invalid request.")
        method, uri, version = parts
        if method not in _METHODS:
            raise _ParseError("Invalid HTTP Method: Unsupported HTTP method.")
        if not uri:
            raise _ParseError("Invalid URI: Empty URI not allowed.")
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _ParseError("Invalid HTTP Version: Unsupported HTTP version.")
        headers: dict[str, str] = {}
        while True:
            header = _line(reader)
            if header is None:
                return None
            if header == "":
                break
            name, colon, value = header.partition(":")
            if not colon:
                raise _ParseError(f"Invalid header. Reason: Invalid header. Key: {name}")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "identity") != "identity":
            raise _ParseError("Invalid header. Reason: Transfer-Encoding: chunked is not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _ParseError("Invalid header. Reason: Invalid value. Key:Content-Length; Value:") from None
        if length > self._max_payload:
            raise _ParseError(
                f"Request payload with size {length} is larger than the limit of {self._max_payload} allowed by server."
            )
        if length and headers.get("expect") == "100-continue":
            connection.sendall(b"HTTP/1.1 100 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n")
        body = reader.read(length) if length else None
        if body is not None and len(body) < length:
            return None
        path = uri.removeprefix("http://")
        if path != uri:
            path = "/" + path.partition("/")[2]
        return Request(method, path, headers, body)


def _line(reader: BinaryIO) -> str | None:
    raw = reader.readline(_MAX_LINE + 2)
    if not raw:
        return None
    if not raw.endswith(b"\r\n"):
        raise _ParseError("Invalid request.")
    return raw[:-2].decode("utf-8", errors="replace")
