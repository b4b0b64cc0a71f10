"""Value rules: every constraint on a value of the vocabulary, defined once.

A rule is an ``Annotated`` type whose ``msgspec.Meta`` carries the rule's bounds and,
in ``extra``, its refusal: the sentence that tells a client what was wrong, a template
over ``name`` (the field), ``value`` and, inside maps, ``key``; and where a bound is not
msgspec's (a pattern, "the first item is not empty"), its ``check`` (``runtime.messages.ruling``
writes them down and checks them). msgspec enforces its bounds as a message is decoded;
``broken_rule`` runs the checks right after and words any refusal, so ``bad_request``
names the field and what is accepted. (msgspec's own ``pattern`` constraint is not used:
in msgspec 0.22 it corrupts memory when its type information is freed - msgspec issue
#717, reproduced here as segfaults.) The numbers are ``runtime.messages.limits``'s.
"""

from __future__ import annotations

import re
import signal as signals
from typing import Annotated, Any

import msgspec

from runtime.errors import BadRequest
from runtime.messages.limits import (
    IMAGE_REFERENCE,
    MAX_ARGV_ITEMS,
    MAX_CMD_CHARS,
    MAX_DEPTH,
    MAX_DISK_BYTES,
    MAX_ENV_CHARS,
    MAX_ENV_NAME,
    MAX_ENV_VALUE,
    MAX_ENV_VARS,
    MAX_ID_CHARS,
    MAX_IMAGE_CHARS,
    MAX_LABELS,
    MAX_MCP_NESTING,
    MAX_MEMORY_BYTES,
    MAX_PATH_CHARS,
    MAX_SIZE_CHARS,
    MAX_TIMEOUT_S,
    MAX_TTL_S,
    MIN_DISK_BYTES,
    MIN_MEMORY_BYTES,
    parse_size,
    size_text,
)
from runtime.messages.ruling import broken_rule, meta

__all__ = [
    "AppName",
    "AuditLimit",
    "Cmd",
    "Cpu",
    "Depth",
    "Disk",
    "EncryptionKey",
    "Env",
    "EnvName",
    "EnvValue",
    "FileMode",
    "GitRef",
    "GithubId",
    "ImageName",
    "LabelKey",
    "LabelValue",
    "Labels",
    "McpMessage",
    "McpName",
    "Memory",
    "Path",
    "PrivateKey",
    "ProcessId",
    "ProviderName",
    "RepoRef",
    "Seq",
    "Signal",
    "Timeout",
    "Ttl",
    "WorkspaceId",
    "broken_rule",
    "signal_number",
]

Ttl = Annotated[
    float,
    meta(
        f"{{name}}={{value!r}} must be > 0 and at most {MAX_TTL_S:.0f} (10 years)",
        "A number of seconds > 0, at most 10 years",
        gt=0,
        le=MAX_TTL_S,
    ),
]
"""How long a workspace lives: ``ttl_seconds``."""
Timeout = Annotated[
    float,
    meta(
        f"{{name}}={{value!r}} must be > 0 and at most {MAX_TIMEOUT_S:.0f} (7 days)",
        "A number of seconds > 0, at most 7 days",
        gt=0,
        le=MAX_TIMEOUT_S,
    ),
]
"""How long a command may run: ``timeout_s``."""
Cpu = Annotated[
    float, meta("{name}={value!r} is out of range: expected 0.01 to 1024 cores", "CPU cores", ge=0.01, le=1024)
]
FileMode = Annotated[int, meta("{name}={value!r} is not a file mode (0 to 0o7777)", "A file mode", ge=0, le=0o7777)]
ImageName = Annotated[
    str,
    meta(
        "{name}={value!r} is not a valid image name: expected a Docker reference such as busybox, "
        f"ghcr.io/owner/name:tag or name@sha256:<hex> (repository in lower case, at most {MAX_IMAGE_CHARS} characters)",
        "An image reference (Docker's grammar); on e2b, a template's name or id",
        regex="(?a)" + IMAGE_REFERENCE,
        max_length=MAX_IMAGE_CHARS,
    ),
]
EnvName = Annotated[
    str,
    meta(
        f"env name {{value!r}} is not valid: expected 1 to {MAX_ENV_NAME} letters, digits and _ (not first a digit)",
        "An environment variable name",
        regex=rf"(?a)[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ENV_NAME - 1}}}",
    ),
]
EnvValue = Annotated[
    str,
    meta(
        f"env value of {{key}} is not valid: at most {MAX_ENV_VALUE} characters, no NUL byte",
        "An environment value",
        max_length=MAX_ENV_VALUE,
        check=lambda value: "\x00" not in value,
    ),
]
Env = Annotated[
    dict[EnvName, EnvValue],
    meta(f"{{name}} has too many variables: at most {MAX_ENV_VARS}", max_length=MAX_ENV_VARS),
    meta(
        f"{{name}} is too large: at most {MAX_ENV_CHARS} characters of names and values in all",
        f"Environment variables: at most {MAX_ENV_VARS}, {MAX_ENV_CHARS} characters in all",
        check=lambda env: sum(len(name) + len(value) + 2 for name, value in env.items()) <= MAX_ENV_CHARS,
    ),
]
"""An ``env`` map, bounded as a whole as well as in each name and value."""
_LABEL = "label {key!r} is not valid: keys are 1-63 of [A-Za-z0-9._/-], values at most 256 characters"
LabelKey = Annotated[
    str, meta(_LABEL.replace("{key!r}", "{value!r}"), "A label key", regex=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
]
LabelValue = Annotated[str, meta(_LABEL, "A label value", max_length=256)]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    meta(f"{{name}} has too many labels: at most {MAX_LABELS}", f"Labels: at most {MAX_LABELS}", max_length=MAX_LABELS),
]
McpName = Annotated[
    str,
    meta(
        "{name}={value!r} is not a valid MCP server name: 1-63 of [A-Za-z0-9._-], first a letter or digit",
        "An MCP server's name",
        regex=r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
    ),
]
_CMD_BOUNDS = (
    f"cmd is too large or has a NUL byte: at most {MAX_ARGV_ITEMS} arguments of {MAX_CMD_CHARS} characters in all"
)
Cmd = (
    Annotated[
        list[str],
        meta("cmd is empty", "argv: the program first", min_length=1, check=lambda argv: bool(argv[0])),
        meta(
            _CMD_BOUNDS,
            f"argv: the program first; at most {MAX_ARGV_ITEMS} items, {MAX_CMD_CHARS} characters in all",
            max_length=MAX_ARGV_ITEMS,
            check=lambda argv: (
                sum(len(item) + 1 for item in argv) <= MAX_CMD_CHARS and not any("\x00" in item for item in argv)
            ),
        ),
    ]
    | Annotated[
        str,
        meta("cmd is empty", "A shell command run by sh -c", regex=r"(?s).*\S.*"),
        meta(
            _CMD_BOUNDS,
            f"A shell command run by sh -c, at most {MAX_CMD_CHARS} characters",
            max_length=MAX_CMD_CHARS,
            check=lambda cmd: "\x00" not in cmd,
        ),
    ]
)
"""A command: argv (a non-empty list whose first item is not empty), or a string for ``sh -c``."""
Path = Annotated[
    str,
    meta("{name} is empty", min_length=1),
    meta(
        f"{{name}}={{value!r}} is not a path: at most {MAX_PATH_CHARS} characters, no NUL byte",
        f"A path in the workspace, 1 to {MAX_PATH_CHARS} characters",
        max_length=MAX_PATH_CHARS,
        check=lambda path: "\x00" not in path,
    ),
]
"""A path (``write_file``, ``read_file``, ``git_clone``, ``cwd``); where it may point is checked later."""
WorkspaceId = Annotated[
    str,
    meta(
        f"{{name}}={{value!r}} is not a workspace id: expected ws_ and up to {MAX_ID_CHARS - 3} of [A-Za-z0-9_-]",
        "A workspace's id: ws_ and 12 hex digits",
        regex=rf"ws_[A-Za-z0-9_-]{{1,{MAX_ID_CHARS - 3}}}",
    ),
]
ProcessId = Annotated[
    str,
    meta(
        f"{{name}}={{value!r}} is not a process id: expected 1 to {MAX_ID_CHARS} of [A-Za-z0-9_-]",
        "A streamed process's id: proc_ and 12 hex digits",
        regex=rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_ID_CHARS - 1}}}",
    ),
]
ProviderName = Annotated[
    str,
    meta(
        "{name}={value!r} is not a provider name: expected 1 to 64 of [A-Za-z0-9._-] (gvisor, firecracker, e2b)",
        "A provider: gvisor, firecracker or e2b",
        regex=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    ),
]


def _size_rules(kind: str, low: int, high: int) -> tuple[msgspec.Meta, msgspec.Meta, msgspec.Meta]:
    """A size's rules: text that parses (``4G``), then at least ``low``, then at most ``high`` bytes."""

    def parses(value: str) -> bool:
        try:
            parse_size(value)
        except ValueError:
            return False
        return True

    def size(value: int | str) -> int:  # text that does not parse is the first rule's to refuse
        return value if isinstance(value, int) else (parse_size(value) if parses(value) else low)

    description = f"{kind}: {size_text(low)} to {size_text(high)}, e.g. 4G, 512M or a number of bytes"
    return (
        meta(
            "{name}={value!r} is not a size: expected e.g. 4G, 512M or a number of bytes",
            description,
            max_length=MAX_SIZE_CHARS,
            check=parses,
        ),
        meta(
            f"{{name}}={{value!r}} is below the minimum of {size_text(low)}",
            description,
            check=lambda value: size(value) >= low,
        ),
        meta(
            f"{{name}}={{value!r}} is above the maximum of {size_text(high)}",
            description,
            check=lambda value: size(value) <= high,
        ),
    )


_MEMORY = _size_rules("Memory", MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)
Memory = Annotated[int, _MEMORY[1], _MEMORY[2]] | Annotated[str, _MEMORY[0], _MEMORY[1], _MEMORY[2]]
"""A workspace's memory: a number of bytes, or text such as ``4G``."""
_DISK = _size_rules("Disk", MIN_DISK_BYTES, MAX_DISK_BYTES)
Disk = Annotated[int, _DISK[1], _DISK[2]] | Annotated[str, _DISK[0], _DISK[1], _DISK[2]]
"""A workspace's disk: a number of bytes, or text such as ``10G``."""
AppName = Annotated[
    str,
    meta(
        "{name}={value!r} is not a valid name: 1-64 of [A-Za-z0-9._-], first a letter or digit",
        "A GitHub App's name in this runtime",
        regex=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    ),
]
GithubId = Annotated[int, meta("{name}={value!r} must be a positive integer", "A GitHub id", ge=1)]
PrivateKey = Annotated[
    str,
    meta(
        "private_key is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)",
        "The App's private key, PEM",
        regex=r"\s*-----BEGIN (RSA )?PRIVATE KEY-----[A-Za-z0-9+/=\s]+-----END (RSA )?PRIVATE KEY-----\s*",
        max_length=16384,
    ),
]
EncryptionKey = Annotated[
    str,
    meta(  # never quoted: it is a secret
        "key is not an encryption key: expected 64 hex digits or base64 of 32 bytes",
        "An AES-256 key: 64 hex digits or base64 of 32 bytes",
        max_length=256,
    ),
]
RepoRef = Annotated[
    str,
    meta(
        "{name}={value!r} is not a repository: expected owner/name or an http(s) URL",
        "owner/name, or an http(s) URL of a git repository",
        regex=r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|https?://[^\s@/]+(:\d+)?/\S+",
        max_length=2048,
    ),
]
_GIT_REF = re.compile(r"[^\s\x00-\x1f~^:?*\[\\-][^\s\x00-\x1f~^:?*\[\\]{0,254}")
GitRef = Annotated[
    str,
    meta(
        "{name}={value!r} is not a git ref: no spaces, control characters, '..' or leading '-'",
        "A branch, tag or commit",
        check=lambda ref: _GIT_REF.fullmatch(ref) is not None and ".." not in ref,
    ),
]
Depth = Annotated[
    int, meta(f"{{name}}={{value!r}} must be from 1 to {MAX_DEPTH}", "How many commits to fetch", ge=1, le=MAX_DEPTH)
]
Seq = Annotated[int, meta("{name}={value!r} must be at least 0", "A sequence number (0: from the start)", ge=0)]
AuditLimit = Annotated[
    int, meta("{name}={value!r} is out of range: expected 1 to 1000", "How many uses to answer", ge=1, le=1000)
]


def _depth(value: Any) -> int:
    """How many levels of maps and arrays ``value`` has (without recursing: it may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


McpMessage = Annotated[
    dict[str, Any],
    meta(
        f"message is nested more than {MAX_MCP_NESTING} levels deep",
        f"A JSON-RPC message, at most {MAX_MCP_NESTING} levels of maps and arrays",
        check=lambda message: _depth(message) <= MAX_MCP_NESTING,
    ),
]


def _is_signal(value: str | int) -> bool:
    try:
        signal_number(value)
    except BadRequest:
        return False
    return True


_SIGNAL = f"{{name}}={{value!r}} is not a signal: a name such as TERM, KILL, INT or HUP, or 1 to {signals.NSIG - 1}"
Signal = (
    Annotated[str, meta(_SIGNAL, "A signal's name", max_length=32, check=_is_signal)]
    | Annotated[int, meta(_SIGNAL, "A signal's number", check=_is_signal)]
)


def signal_number(name: str | int) -> int:
    """``TERM``, ``SIGTERM``, ``15`` and ``"15"`` all mean 15.

    Raises:
        BadRequest: Not a signal name or number; the message says what is accepted.
    """
    if isinstance(name, int) or (name.isascii() and name.isdigit()):
        number = int(name)
        if 1 <= number < signals.NSIG:
            return number
        raise BadRequest(f"signal={name!r} is not a signal number (1 to {signals.NSIG - 1})")
    upper = name.upper()
    try:
        return int(signals.Signals[upper if upper.startswith("SIG") else f"SIG{upper}"])
    except KeyError:
        raise BadRequest(f"signal={name!r} is not a signal name (e.g. TERM, KILL, INT, HUP)") from None
