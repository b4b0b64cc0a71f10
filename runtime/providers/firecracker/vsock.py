"""The host side of a Firecracker vsock device: a connection to a port in the guest.

Firecracker proxies host-initiated vsock connections through the Unix socket named in
``PUT /vsock`` (``uds_path``): connect to it, send the line ``CONNECT <port>``, and read
the line ``OK <host port>``; from then on the stream is the guest's connection. When nothing in
the guest listens on the port, Firecracker closes the connection without the ``OK`` line.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from runtime.errors import ProviderUnavailable

__all__ = ["connect", "connect_unix"]

_MAX_LINE = 64
_SUN_PATH_MAX = 107  # sockaddr_un's sun_path, less its NUL


def connect_unix(sock: socket.socket, path: Path) -> None:
    """``sock.connect(path)``, also for paths longer than a Unix socket address can hold.

    A long path is reached through a descriptor of its directory
    (``/proc/self/fd/<n>/<name>``), which is short whatever the directory's path.
    """
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        sock.connect(str(path))
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def connect(uds_path: Path, port: int, timeout_s: float = 5.0) -> socket.socket:
    """A stream to ``port`` in the guest behind ``uds_path``, past the handshake.

    Raises:
        ProviderUnavailable: The device's socket is missing, or the guest refused the port
            (not listening yet, e.g. still booting: retryable).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        connect_unix(sock, uds_path)
        sock.sendall(f"CONNECT {port}\n".encode())
        line = b""
        while not line.endswith(b"\n"):  # byte by byte: what follows the line is the guest's
            chunk = sock.recv(1)
            if not chunk:
                raise ProviderUnavailable(f"nothing listens on vsock port {port} in the guest (yet)", retryable=True)
            line += chunk
            if len(line) > _MAX_LINE:
                raise ProviderUnavailable(f"the vsock device answered {line[:_MAX_LINE]!r}, not OK")
        if not line.startswith(b"OK "):
            raise ProviderUnavailable(f"the vsock device answered {line.strip()!r}, not OK")
    except OSError as exc:
        sock.close()
        raise ProviderUnavailable(f"vsock {uds_path} port {port}: {exc}", retryable=True) from None
    except ProviderUnavailable:
        sock.close()
        raise
    sock.settimeout(None)
    return sock
