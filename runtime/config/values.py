"""How each configuration value is read from text (or TOML): sizes, numbers, choices, keys.

Every parser takes the raw value and returns the typed setting, or raises ``ValueError``;
``runtime.config.settings`` turns that into the one-line error naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_IMAGE",
    "ENDPOINT_RE",
    "MIN_MEMORY_BYTES",
    "NETWORK_RE",
    "PROVIDERS",
    "address",
    "aes_key",
    "boolean",
    "choice",
    "http_url",
    "memory",
    "number",
    "parse_size",
    "path",
    "pattern",
    "providers",
    "text",
]

PROVIDERS = ("gvisor", "firecracker", "e2b")
DEFAULT_IMAGE = "agent-workspaces/base:bookworm"
MIN_MEMORY_BYTES = 6 << 20
"""The least memory a workspace may have (Docker refuses less)."""

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ENDPOINT_RE = re.compile(r"^(tcp://\S+:(\d+|\*)|ipc://\S+|inproc://\S+)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_size(value: object) -> int:
    """Parse a size such as ``4G``, ``512M``, ``1.5g``, ``4GiB`` or a byte count.

    Units are binary (``1G`` is 1024**3 bytes), as in Docker's ``--memory``.

    Raises:
        ValueError: ``value`` is not a positive size.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(value)
        return value
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise ValueError(value)
    number, unit, _ = match.groups()
    size = int(float(number) * _SIZE_UNITS[unit.lower()])
    if size <= 0:
        raise ValueError(value)
    return size


def memory(value: object) -> int:
    """A size no smaller than ``MIN_MEMORY_BYTES`` (Docker refuses less)."""
    size = parse_size(value)
    if size < MIN_MEMORY_BYTES:
        raise ValueError(value)
    return size


def boolean(value: object) -> bool:
    """``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def number(low: float, high: float = math.inf, *, integer: bool = False) -> Callable[[object], Any]:
    """A parser of numbers from ``low`` to ``high`` (whole ones if ``integer``)."""

    def parse(value: object) -> float | int:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(value)
        if integer:
            if number != int(number):
                raise ValueError(value)
            return int(number)
        return number

    return parse


def choice(*choices: str) -> Callable[[object], str]:
    """A parser of one of ``choices`` (any case)."""

    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(value)
        return text

    return parse


def pattern(regex: re.Pattern[str], *, allow_empty: bool) -> Callable[[object], str]:
    """A parser of text matching ``regex`` (or empty, if ``allow_empty``)."""

    def parse(value: object) -> str:
        text = str(value).strip()
        if (text or not allow_empty) and not regex.match(text):
            raise ValueError(value)
        return text

    return parse


def providers(value: object) -> tuple[str, ...]:
    """A comma-separated list of provider names (empty: none), duplicates removed."""
    names = [part.strip().lower() for part in str(value).split(",") if part.strip()]
    if any(name not in PROVIDERS for name in names):
        raise ValueError(value)
    return tuple(dict.fromkeys(names))


def address(value: object) -> str:
    """``host:port`` to listen on (empty: off)."""
    text = str(value).strip()
    if not text:
        return ""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(value)
    return text


def http_url(value: object) -> str:
    """An ``http://`` or ``https://`` URL with a host, without a trailing slash."""
    text = str(value).strip().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or rest.startswith("/") or any(c.isspace() for c in text):
        raise ValueError(value)
    return text


def text(value: object) -> str:
    """Any text, stripped."""
    return str(value).strip()


def path(value: object) -> Path:
    """A non-empty path, ``~`` expanded."""
    text = str(value).strip()
    if not text:
        raise ValueError(value)
    return Path(text).expanduser()


def aes_key(value: object) -> bytes:
    """An AES-256 key: 64 hex digits or base64 (standard or url-safe) of 32 bytes."""
    text = str(value).strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None, validate=True
        )
    except (binascii.Error, ValueError):
        raise ValueError(value) from None
    if len(key) != 32:
        raise ValueError(value)
    return key
