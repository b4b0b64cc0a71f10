"""The vsock device's host side: Firecracker's Unix-socket muxer, over a guest that listens on Unix sockets.

As ``src/vmm/src/devices/virtio/vsock/unix/muxer.rs`` and ``csm/connection.rs``:

- ``PUT /vsock`` binds ``uds_path`` at once (an existing file is ``EADDRINUSE``); a second
  ``PUT /vsock`` removes the first socket file before binding the new one. Connections are
  accepted once the device is active (the guest booted); before, they wait in the backlog.
- A host connection must send ``CONNECT <port>\\n`` in one go: the muxer reads 10 bytes
  without waiting, then byte by byte up to ``\\n`` or 32 bytes, splits on whitespace,
  wants ``connect`` (any case) and a ``u32``; anything else, or a short read, and the
  connection is dropped.
- The guest side is ``/proc/<init pid>/root/run/vsock/<port>`` (what the guest init binds
  under ``WORKSPACE_INIT_VSOCK=unix``): nothing there, or a full backlog, is the guest's
  RST, i.e. the host connection is closed without a word; else the host reads
  ``OK <local port>\\n``, local ports counting from ``1 << 30``.
- Streams: the host's end of file (``shutdown(SHUT_WR)`` or ``close``) ends the whole
  connection, as Firecracker's ``LocalClosed`` does (it sends the guest SHUTDOWN with
  both flags and drops whatever the guest sends after). The guest shutting down only its
  writing side leaves the host-to-guest direction open, and the host sees end of file only
  once the guest closed entirely (``POLLHUP``), after the bytes the guest sent before.

Guest-initiated connections (to ``<uds_path>_<port>``) are not emulated: nothing in the
workspace guest makes them.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import threading
from collections.abc import Callable

__all__ = ["VsockDevice", "bind_error"]

_MIN_READ = 10  # len(b"connect 0\n")
_MAX_LINE = 32
_PORT = re.compile(r"\+?[0-9]+")
_BUFFER = 256 * 1024
_FLUSH_S = 2.0  # CONN_SHUTDOWN_TIMEOUT_MS
_SUN_PATH_MAX = 107


def bind_error(exc: OSError) -> str:
    """``VsockUnixBackendError::UnixBind`` in Firecracker's words."""
    return f"Error binding to the host-side Unix socket: {_io_error(exc)}"


def _io_error(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} (os error {exc.errno})"


class VsockDevice:
    """One vsock device (``guest_cid``, ``uds_path``), listening from creation.

    Raises:
        OSError: ``uds_path`` cannot be bound (see ``bind_error``); a path too long for a
            Unix socket gives ``ValueError`` as Rust's ``SUN_LEN`` check does.
    """

    def __init__(self, guest_cid: int, uds_path: str) -> None:
        self.guest_cid, self.uds_path = guest_cid, uds_path
        if len(os.fsencode(uds_path)) > _SUN_PATH_MAX:
            raise ValueError("path must be shorter than SUN_LEN")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(uds_path)
            self._listener.listen(socket.SOMAXCONN)
        except OSError:
            self._listener.close()
            raise
        self._lock = threading.Lock()
        self._last_port = (1 << 30) - 1
        self._ports: set[int] = set()
        self._open: set[socket.socket] = set()
        self._guest_root: Callable[[], str] | None = None

    def config(self) -> dict[str, object]:
        """What ``GET /vm/config`` shows of it."""
        return {"guest_cid": self.guest_cid, "uds_path": self.uds_path}

    def activate(self, guest_root: Callable[[], str]) -> None:
        """Start accepting host connections; ``guest_root()`` is the guest's root, e.g. ``/proc/<pid>/root``."""
        self._guest_root = guest_root
        threading.Thread(target=self._accept, name="fc_vsock", daemon=True).start()

    def close(self) -> None:
        """Stop listening and drop every connection (the socket file stays, as Firecracker leaves it)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    # ------------------------------------------------------------------ connections

    def _accept(self) -> None:
        while True:
            try:
                host, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(host,), name="fc_vsock_conn", daemon=True).start()

    def _track(self, sock: socket.socket, keep: bool) -> None:
        with self._lock:
            if keep:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def _allocate(self) -> int:
        with self._lock:
            while True:
                self._last_port = ((self._last_port + 1) & ~(1 << 31)) | (1 << 30)
                if self._last_port not in self._ports:
                    self._ports.add(self._last_port)
                    return self._last_port

    def _free(self, port: int) -> None:
        with self._lock:
            self._ports.discard(port)

    def _serve(self, host: socket.socket) -> None:
        self._track(host, True)
        try:
            port = _read_port(host)
            if port is None:
                return
            local = self._allocate()
            try:
                guest = self._connect_guest(port)
                if guest is None:
                    return
                self._track(guest, True)
                try:
                    host.sendall(f"OK {local}\n".encode())
                    _pump(host, guest)
                finally:
                    self._track(guest, False)
                    guest.close()
            finally:
                self._free(local)
        except OSError:
            pass  # the connection is killed, as the muxer kills it on any stream error
        finally:
            self._track(host, False)
            host.close()

    def _connect_guest(self, port: int) -> socket.socket | None:
        assert self._guest_root is not None
        guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        guest.setblocking(False)
        try:
            guest.connect(f"{self._guest_root()}/run/vsock/{port}")
        except OSError:  # no listener, or its backlog is full: the guest answers with RST
            guest.close()
            return None
        return guest


def _read_port(host: socket.socket) -> int | None:
    """The port of a ``CONNECT`` line read as the muxer reads it, or ``None`` (drop the connection)."""
    select.select([host], [], [])
    line = b""
    try:
        while len(line) < _MIN_READ:
            chunk = host.recv(_MIN_READ - len(line), socket.MSG_DONTWAIT)
            if not chunk:
                return None
            line += chunk
        while not line.endswith(b"\n") and len(line) < _MAX_LINE:
            chunk = host.recv(1, socket.MSG_DONTWAIT)
            if not chunk:
                return None
            line += chunk
    except (BlockingIOError, ConnectionError):
        return None
    try:
        words = line.decode("utf-8").split()
    except UnicodeDecodeError:
        return None
    if len(words) < 2 or words[0].lower() != "connect" or not _PORT.fullmatch(words[1]):
        return None
    port = int(words[1])
    return port if port < 1 << 32 else None


def _pump(host: socket.socket, guest: socket.socket) -> None:
    """Copy both ways with Firecracker's closing rules (see the module's docstring)."""
    host.setblocking(False)
    to_guest, to_host = bytearray(), bytearray()
    guest_done_writing = False
    poller = select.poll()
    while True:
        host_events = select.POLLIN if len(to_guest) < _BUFFER else 0
        guest_events = select.POLLIN if not guest_done_writing and len(to_host) < _BUFFER else 0
        poller.register(host, host_events | (select.POLLOUT if to_host else 0))
        poller.register(guest, guest_events | (select.POLLOUT if to_guest else 0))
        for fd, events in poller.poll():
            if fd == host.fileno():
                if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    data = _read(host)
                    if data is None:  # the host closed or shut down writing: LocalClosed ends it all
                        _flush(guest, to_guest)
                        return
                    to_guest += data
                if events & select.POLLOUT and not _send(host, to_host):
                    return
                continue
            if events & select.POLLIN:
                data = _read(guest)
                if data is None:
                    guest_done_writing = True
                else:
                    to_host += data
            gone = bool(events & select.POLLOUT) and not _send(guest, to_guest)
            if gone or events & (select.POLLHUP | select.POLLERR):
                while (data := _read(guest)) is not None and data:
                    to_host += data
                _flush(host, to_host)
                return  # the guest closed entirely: RST once its bytes are delivered


def _read(sock: socket.socket) -> bytes | None:
    """What is there to read (``b""`` if nothing yet); ``None`` at end of file or on an error."""
    try:
        data = sock.recv(_BUFFER)
    except BlockingIOError:
        return b""
    except OSError:
        return None
    return data or None


def _send(sock: socket.socket, data: bytearray) -> bool:
    """Send what the socket takes now; ``False`` if its peer is gone."""
    try:
        del data[: sock.send(data)]
    except BlockingIOError:
        pass
    except OSError:
        return False
    return True


def _flush(sock: socket.socket, data: bytearray) -> None:
    if data:
        sock.settimeout(_FLUSH_S)
        with contextlib.suppress(OSError):
            sock.sendall(data)
