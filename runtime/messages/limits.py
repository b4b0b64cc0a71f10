"""The bounds of every value a client may send, and the one parser of sizes.

Each bound is far above what a real request needs and low enough that no request can
make the runtime store, log or hand on an unreasonable value (docs/protocol.md, "Limits",
lists them with their refusals). Sizes live here, not in ``runtime.config``, because the
rules check them as a request is decoded and the configuration itself uses the
vocabulary (``runtime.config`` re-exports ``parse_size``).
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = [
    "IMAGE_REFERENCE",
    "MAX_ARGV_ITEMS",
    "MAX_CMD_CHARS",
    "MAX_DEPTH",
    "MAX_DISK_BYTES",
    "MAX_ENV_CHARS",
    "MAX_ENV_NAME",
    "MAX_ENV_VALUE",
    "MAX_ENV_VARS",
    "MAX_ID_CHARS",
    "MAX_IMAGE_CHARS",
    "MAX_LABELS",
    "MAX_MCP_NESTING",
    "MAX_MEMORY_BYTES",
    "MAX_OP_CHARS",
    "MAX_PATH_CHARS",
    "MAX_REQUEST_ID_CHARS",
    "MAX_SIZE_CHARS",
    "MAX_TIMEOUT_S",
    "MAX_TTL_S",
    "MIN_DISK_BYTES",
    "MIN_MEMORY_BYTES",
    "parse_size",
    "size_text",
]

MAX_REQUEST_ID_CHARS: Final = 256
"""Characters of a request's ``id`` (the Python client's are 10 or so, a UUID is 36)."""
MAX_OP_CHARS: Final = 64
"""Characters of a request's ``op`` (the longest op is 17)."""
MAX_ENV_VARS: Final = 256
"""Variables in one ``env`` map."""
MAX_ENV_NAME: Final = 255
"""Characters of a variable's name."""
MAX_ENV_VALUE: Final = 128 << 10
"""Characters of a variable's value (Linux refuses a longer ``NAME=value`` string anyway)."""
MAX_ENV_CHARS: Final = 1 << 20
"""Characters of one ``env`` map in all: each name and value, plus 2 (``=`` and the NUL)."""
MAX_LABELS: Final = 64
"""Labels of a workspace (and of a ``list`` filter)."""
MAX_IMAGE_CHARS: Final = 255
"""Characters of an image reference (Docker bounds a name to 255)."""
MAX_PATH_CHARS: Final = 4096
"""Characters of a path (Linux's ``PATH_MAX``)."""
MAX_ARGV_ITEMS: Final = 4096
"""Items of an argv ``cmd``."""
MAX_CMD_CHARS: Final = 1 << 20
"""Characters of a ``cmd`` in all: a string, or each argv item plus 1 (its NUL)."""
MAX_ID_CHARS: Final = 64
"""Characters of a workspace or process id (the runtime's own are 15 and 17)."""
MAX_SIZE_CHARS: Final = 32
"""Characters of a size written as text (``"4G"``)."""
MIN_MEMORY_BYTES: Final = 6 << 20
"""The least memory a workspace may have (Docker refuses less)."""
MAX_MEMORY_BYTES: Final = 1 << 40
"""The most memory a workspace may ask for: 1 TiB."""
MIN_DISK_BYTES: Final = 1 << 20
"""The least disk a workspace may ask for: 1 MiB."""
MAX_DISK_BYTES: Final = 64 << 40
"""The most disk a workspace may ask for: 64 TiB."""
MAX_TTL_S: Final = 10 * 365 * 86400.0
"""The longest ``ttl_seconds``: 10 years."""
MAX_TIMEOUT_S: Final = 7 * 86400.0
"""The longest ``timeout_s`` of a command: 7 days."""
MAX_DEPTH: Final = (1 << 31) - 1
"""The deepest shallow clone (git keeps the depth in an int)."""
MAX_MCP_NESTING: Final = 100
"""Levels of maps and arrays in an ``mcp_call`` message."""

# Docker's reference grammar (github.com/distribution/reference, regexp.go): an optional
# registry host[:port], lower-case path components joined by separators, an optional tag
# and an optional digest. An E2B template's name or id is such a path of one component.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE: Final = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
"""An image reference as Docker parses one (the whole value must match, ASCII only)."""

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: object) -> int:
    """Parse a size such as ``4G``, ``512M``, ``1.5g``, ``4GiB`` or a byte count.

    Units are binary (``1G`` is 1024**3 bytes), as in Docker's ``--memory``.

    Raises:
        ValueError: ``value`` is not a positive size (text longer than ``MAX_SIZE_CHARS``
            is not one either).
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(value)
        return value
    text = str(value)
    match = _SIZE_RE.fullmatch(text) if len(text) <= MAX_SIZE_CHARS else None
    if match is None:
        raise ValueError(value)
    number, unit, _ = match.groups()
    scaled = float(number) * _SIZE_UNITS[unit.lower()]
    if not math.isfinite(scaled) or scaled < 1:  # a float of 300 digits is infinite
        raise ValueError(value)
    return int(scaled)


def size_text(size: int) -> str:
    """``size`` in the largest binary unit that divides it: ``6M``, ``1T``."""
    for unit in "TGMK":
        scale = _SIZE_UNITS[unit.lower()]
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)
