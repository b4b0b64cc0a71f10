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

# Sizes are parsed by the vocabulary, which checks a request's sizes as it is decoded.
from runtime.messages.limits import MAX_MEMORY_BYTES, MIN_MEMORY_BYTES, parse_size

__all__ = [
    "DEFAULT_IMAGE",
    "ENDPOINT_RE",
    "MAX_MEMORY_BYTES",
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
NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ENDPOINT_RE = re.compile(r"^(tcp://\S+:(\d+|\*)|ipc://\S+|inproc://\S+)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def memory(value: object) -> int:
    """A size from ``MIN_MEMORY_BYTES`` (Docker refuses less) to ``MAX_MEMORY_BYTES``."""
    size = parse_size(value)
    if not MIN_MEMORY_BYTES <= size <= MAX_MEMORY_BYTES:
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
