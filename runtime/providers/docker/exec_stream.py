"""Running one command in a container through Docker's exec API, with deadlines.

``docker exec`` output arrives on a hijacked HTTP connection as multiplexed frames
(8-byte header: stream id, 3 zero bytes, big-endian u32 length). On a Unix socket the
upgrade request is written by hand so no response bytes can be swallowed by an HTTP
library's read buffer and every read honours the exec's deadline; other Docker hosts
use the SDK's hijacked socket. Output beyond ``limit`` bytes per stream is dropped and
replaced by a marker naming how much was dropped.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from runtime.errors import Conflict, NotFound, ProviderUnavailable
from runtime.messages import OUTPUT_LIMIT

__all__ = ["ExecStream", "docker_demux", "open_unix_exec", "pump"]

_HEADER = struct.Struct(">BxxxL")
_STDOUT, _STDERR = 1, 2

log = logging.getLogger(__name__)

_LOGGED_CHARS = 1000


def _one_line(payload: bytes) -> str:
    """Text from a workspace as one log line: control characters escaped (no forged lines), length capped."""
    text = payload.decode(errors="replace").rstrip()
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return text if len(text) <= _LOGGED_CHARS else f"{text[:_LOGGED_CHARS]}... ({len(text)} characters)"


def _take_frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """Remove the complete multiplexed frames from ``buffer``: ``(stream id, payload)``."""
    while len(buffer) >= _HEADER.size:
        kind, size = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            return
        payload = bytes(buffer[_HEADER.size : _HEADER.size + size])
        del buffer[: _HEADER.size + size]
        yield kind, payload


def docker_demux(log_name: str) -> Callable[[bytes], bytes]:
    """A stateful filter from an attached exec's multiplexed stream to its stdout bytes.

    What the process writes to stderr is logged as warnings naming ``log_name``.
    """
    buffer = bytearray()

    def demux(data: bytes) -> bytes:
        buffer.extend(data)
        out = bytearray()
        for kind, payload in _take_frames(buffer):
            if kind == _STDERR:
                log.warning("%s: %s", log_name, _one_line(payload))
            elif kind == _STDOUT:
                out += payload
        return bytes(out)

    return demux


@dataclass
class ExecStream:
    """An attached exec: the socket and any stream bytes read with the HTTP headers."""

    sock: socket.socket
    pending: bytes = b""


@dataclass
class _Capture:
    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room >= len(chunk):
            self.data += chunk
        else:
            self.data += chunk[: max(room, 0)]
            self.dropped += len(chunk) - max(room, 0)

    def value(self) -> bytes:
        if self.dropped:
            return bytes(self.data) + f"\n[output truncated: {self.dropped} bytes omitted]\n".encode()
        return bytes(self.data)


def open_unix_exec(socket_path: str, api_version: str, exec_id: str, *, timeout: float) -> ExecStream:
    """Start exec ``exec_id`` over the daemon's Unix socket and return the attached stream.

    Raises:
        ProviderUnavailable: The daemon cannot be reached or failed.
        NotFound: The exec (or its container) is gone.
        Conflict: The container is not running.
    """
    body = json.dumps({"Detach": False, "Tty": False}).encode()
    request = (
        f"POST /v{api_version}/exec/{exec_id}/start HTTP/1.1\r\n"
        "Host: docker\r\nContent-Type: application/json\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ProviderUnavailable("Docker closed the exec connection before answering")
            buffer += chunk
        head, rest = buffer.split(b"\r\n\r\n", 1)
        status = _status(head)
        if status not in (101, 200):
            raise _http_error(status, head, rest, sock)
        return ExecStream(sock, rest)
    except OSError as exc:
        sock.close()
        raise ProviderUnavailable(f"Docker daemon not reachable at {socket_path}: {exc}") from exc
    except BaseException:
        sock.close()
        raise


def _status(head: bytes) -> int:
    """The status code of an HTTP response head (``ProviderUnavailable`` if it is not one)."""
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProviderUnavailable(f"Docker answered the exec with something that is not HTTP: {head[:80]!r}")
    return int(parts[1])


def _http_error(status: int, head: bytes, rest: bytes, sock: socket.socket) -> Exception:
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    try:
        body = json.loads(rest[:length] or b"{}")
    except ValueError:
        body = rest[:length].decode(errors="replace")
    message = str(body.get("message", "")) if isinstance(body, dict) else str(body)
    if status == 404:
        return NotFound(f"exec target not found: {message}")
    if status == 409:
        return Conflict(f"workspace is not running: {message}")
    return ProviderUnavailable(f"Docker exec failed ({status}): {message}", retryable=status >= 500)


def pump(
    stream: ExecStream, *, stdin: bytes | None, deadline: float | None, limit: int = OUTPUT_LIMIT
) -> tuple[bytes, bytes, bool]:
    """Feed ``stdin`` and read multiplexed stdout/stderr until EOF or ``deadline``.

    Writing and reading are interleaved, so a process that answers while its input is
    still arriving cannot deadlock against us. Stdin is closed once fully written.

    Args:
        stream: The attached exec; its write side must still be open if ``stdin`` is given.
        stdin: Bytes for the process's standard input, or ``None``.
        deadline: ``time.monotonic()`` value after which reading stops.
        limit: Bytes kept per output stream.

    Returns:
        ``(stdout, stderr, timed_out)``; on timeout the output read so far.
    """
    captures = {_STDOUT: _Capture(limit), _STDERR: _Capture(limit)}
    buffer = bytearray(stream.pending)
    sock = stream.sock
    sock.setblocking(False)
    outgoing = memoryview(stdin) if stdin is not None else None
    if outgoing is not None and not outgoing:
        sock.shutdown(socket.SHUT_WR)
        outgoing = None
    while True:
        for kind, payload in _take_frames(buffer):
            capture = captures.get(kind)
            if capture is not None:
                capture.add(payload)
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            return captures[_STDOUT].value(), captures[_STDERR].value(), True
        readable, writable, _ = select.select([sock], [sock] if outgoing is not None else [], [], wait)
        if writable and outgoing is not None:
            try:
                sent = sock.send(outgoing[: 1 << 20])
            except BlockingIOError:
                sent = 0
            except OSError:
                sent, outgoing = 0, None  # the process closed its stdin; keep reading
            if outgoing is not None:
                outgoing = outgoing[sent:]
                if not outgoing:
                    sock.shutdown(socket.SHUT_WR)
                    outgoing = None
        if not readable:
            continue
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            return captures[_STDOUT].value(), captures[_STDERR].value(), False
        buffer += chunk
