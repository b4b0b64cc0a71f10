"""CURVE key files: the runtime's server key pair and the client public keys it admits.

Everything lives under ``STATE_DIR/curve``::

    server.key              the server's public key (give it to clients)
    server.key_secret       the server's key pair (mode 0600, never leaves this machine)
    clients/NAME.key        a client's public key: listed here means admitted
    issued/NAME.key_secret  a client's key pair as ``workspaces keys new`` made it (mode 0600):
                            copy it to the client, point WORKSPACE_ZMQ_CLIENT_KEY at it

The files are ZeroMQ's certificate format (ZPL, as czmq and pyzmq's ``zmq.auth`` write
it), so keys made elsewhere can be listed too. Keys are Z85 text (40 characters).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import zmq

from runtime.errors import ConfigError

__all__ = [
    "NAME_RE",
    "KeyPair",
    "client_keys",
    "curve_dir",
    "ensure_server_keys",
    "load_key_pair",
    "load_public_key",
    "new_client_keys",
    "remove_client_key",
    "server_public_key",
]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_Z85_KEY_RE = re.compile(rb"^[0-9A-Za-z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_KEY_LINE_RE = re.compile(rb'^\s*(public|secret)-key\s*=\s*"?([^"\s]+)"?\s*$')


class KeyPair(NamedTuple):
    """A CURVE key pair, both keys as Z85 (40 bytes each)."""

    public: bytes
    secret: bytes


def curve_dir(state_dir: Path) -> Path:
    """Where the runtime's CURVE keys live."""
    return state_dir / "curve"


def _is_key(value: bytes) -> bool:
    return bool(_Z85_KEY_RE.match(value))


def _parse(path: Path) -> tuple[bytes | None, bytes | None]:
    found: dict[bytes, bytes] = {}
    for line in path.read_bytes().splitlines():
        match = _KEY_LINE_RE.match(line)
        if match and _is_key(match.group(2)):
            found[match.group(1)] = match.group(2)
    return found.get(b"public"), found.get(b"secret")


def _write(path: Path, public: bytes, secret: bytes | None, *, exclusive: bool = False) -> None:
    """Write a certificate whole (a reader never sees half of it), private if it holds a secret.

    ``exclusive``: fail with ``FileExistsError`` if ``path`` exists (of two writers, the first wins).
    """
    kind = "secret" if secret else "public"
    lines = [
        f"#   ZeroMQ CURVE {kind} certificate, made by `workspaces keys` on {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "#   DO NOT share this file: it holds a secret key." if secret else "#   A public key: safe to share.",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    path.parent.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # (mode applies to the last one only)
    path.parent.mkdir(exist_ok=True, mode=0o700)
    fd, draft = tempfile.mkstemp(prefix=".key-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        if not secret:
            os.chmod(draft, 0o644)
        if exclusive:
            os.link(draft, path)
        else:
            os.replace(draft, path)
    finally:
        if os.path.lexists(draft):
            os.unlink(draft)


def load_key_pair(path: Path) -> KeyPair:
    """A key pair from a ``*.key_secret`` file, which must be private (mode 0600).

    Raises:
        ConfigError: The file is missing, readable by others, or holds no key pair.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"key file {path} has mode {mode:04o}: it must be private (run: chmod 600 {path})")
        public, secret = _parse(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror}") from None
    if public is None or secret is None:
        raise ConfigError(f"{path} holds no CURVE key pair (make one with: workspaces keys new NAME)")
    return KeyPair(public, secret)


def load_public_key(value: str) -> bytes:
    """A public key given as Z85 text (40 characters) or as the path of a ``.key`` file.

    Raises:
        ConfigError: It is neither.
    """
    text = value.strip()
    if _is_key(text.encode()):
        return text.encode()
    path = Path(text).expanduser()
    try:
        public, _ = _parse(path)
    except OSError as exc:
        raise ConfigError(
            f"{value!r} is neither a 40-character Z85 public key nor a readable key file: {exc.strerror}"
        ) from None
    if public is None:
        raise ConfigError(f"{path} holds no CURVE public key")
    return public


def ensure_server_keys(state_dir: Path) -> KeyPair:
    """The server's key pair, made on first use."""
    directory = curve_dir(state_dir)
    secret_file = directory / "server.key_secret"
    if not secret_file.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first: use that one
            _write(secret_file, *zmq.curve_keypair(), exclusive=True)
    pair = load_key_pair(secret_file)
    if server_public_key(state_dir) != pair.public:  # the public file follows the secret one
        _write(directory / "server.key", pair.public, None)
    return pair


def server_public_key(state_dir: Path) -> bytes | None:
    """The server's public key, if it has one yet."""
    try:
        public, _ = _parse(curve_dir(state_dir) / "server.key")
    except FileNotFoundError:
        return None
    return public


def _checked(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"key name {name!r} is not valid: expected letters, digits, '.', '_' or '-' (at most 64)")
    return name


def new_client_keys(state_dir: Path, name: str, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Make a client key pair and admit its public key; return the public and the secret file.

    Raises:
        ConfigError: The name is not valid or already taken.
    """
    public_file = curve_dir(state_dir) / "clients" / f"{_checked(name)}.key"
    secret_file = (out_dir or curve_dir(state_dir) / "issued") / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if path.exists():
            raise ConfigError(f"{path} exists: remove it first (workspaces keys remove {name}) or pick another name")
    public, secret = zmq.curve_keypair()
    _write(secret_file, public, secret, exclusive=True)
    _write(public_file, public, None)
    return public_file, secret_file


def client_keys(state_dir: Path) -> dict[str, bytes]:
    """The admitted client public keys by name (``clients/NAME.key``); unreadable files are skipped."""
    keys = {}
    directory = curve_dir(state_dir) / "clients"
    for path in sorted(directory.glob("*.key")) if directory.is_dir() else ():
        try:
            public, _ = _parse(path)
        except OSError:
            continue
        if public is not None:
            keys[path.stem] = public
    return keys


def remove_client_key(state_dir: Path, name: str) -> list[Path]:
    """Stop admitting the client ``name``: remove its public key (and the issued secret, if kept here)."""
    directory = curve_dir(state_dir)
    removed = []
    for path in (directory / "clients" / f"{_checked(name)}.key", directory / "issued" / f"{name}.key_secret"):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
