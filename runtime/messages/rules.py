"""Value rules: every constraint on a value of the vocabulary, defined once.

A rule is an ``Annotated`` type whose ``msgspec.Meta`` carries the rule's bounds and,
in ``extra``, its refusal: the sentence that tells a client what was wrong, a template
over ``name`` (the field), ``value`` and, inside maps, ``key``; and where a bound is not
msgspec's (a pattern, "the first item is not empty"), its ``check``. msgspec enforces its
bounds as a message is decoded; ``broken_rule`` runs the checks right after and words
any refusal, so ``bad_request`` names the field and what is accepted. (msgspec's own
``pattern`` constraint is not used: in msgspec 0.22 it corrupts memory when its type
information is freed - msgspec issue #717, reproduced here as segfaults.)
"""

from __future__ import annotations

import re
import signal as signals
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Union

import msgspec

from runtime.errors import BadRequest

__all__ = [
    "AppName",
    "Cmd",
    "Cpu",
    "Depth",
    "EnvName",
    "EnvValue",
    "FileMode",
    "GitRef",
    "GithubId",
    "ImageName",
    "LabelKey",
    "LabelValue",
    "McpName",
    "PrivateKey",
    "RepoRef",
    "Seconds",
    "broken_rule",
    "signal_number",
]


def _meta(
    refusal: str,
    description: str,
    *,
    regex: str | None = None,
    check: Callable[[Any], bool] | None = None,
    **bounds: Any,
) -> msgspec.Meta:
    """A rule's ``Meta``: msgspec's ``bounds``, and ``regex`` (the whole value must match) or ``check``."""
    extra: dict[str, Any] = {"refusal": refusal}
    if regex is not None:
        fullmatch = re.compile(regex).fullmatch  # unlike `$`, no newline may slip in after the match
        extra["check"] = lambda value: fullmatch(value) is not None
    elif check is not None:
        extra["check"] = check
    return msgspec.Meta(description=description, extra=extra, **bounds)


Seconds = Annotated[float, _meta("{name}={value!r} must be > 0", "A number of seconds > 0", gt=0)]
"""A duration: ``ttl_seconds``, ``timeout_s``."""
Cpu = Annotated[
    float, _meta("{name}={value!r} is out of range: expected 0.01 to 1024 cores", "CPU cores", ge=0.01, le=1024)
]
FileMode = Annotated[int, _meta("{name}={value!r} is not a file mode (0 to 0o7777)", "A file mode", ge=0, le=0o7777)]
ImageName = Annotated[
    str, _meta("{name}={value!r} is not a valid image name", "An image reference", regex=r"\S{1,255}")
]
EnvName = Annotated[
    str,
    _meta(
        "env name {value!r} is not valid: expected letters, digits and _ (not first a digit)",
        "An environment variable name",
        regex=r"[A-Za-z_][A-Za-z0-9_]*",
    ),
]
EnvValue = Annotated[str, _meta("env value of {key} contains a NUL byte", "An environment value", regex=r"[^\x00]*")]
_LABEL = "label {key!r} is not valid: keys are 1-63 of [A-Za-z0-9._/-], values at most 256 characters"
LabelKey = Annotated[
    str, _meta(_LABEL.replace("{key!r}", "{value!r}"), "A label key", regex=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
]
LabelValue = Annotated[str, _meta(_LABEL, "A label value", max_length=256)]
McpName = Annotated[
    str,
    _meta(
        "{name}={value!r} is not a valid MCP server name: 1-63 of [A-Za-z0-9._-], first a letter or digit",
        "An MCP server's name",
        regex=r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
    ),
]
Cmd = (
    Annotated[
        list[str], _meta("cmd is empty", "argv: the program first", min_length=1, check=lambda argv: bool(argv[0]))
    ]
    | Annotated[str, _meta("cmd is empty", "A shell command run by sh -c", regex=r"(?s).*\S.*")]
)
"""A command: argv (a non-empty list whose first item is not empty), or a string for ``sh -c``."""
AppName = Annotated[
    str,
    _meta(
        "{name}={value!r} is not a valid name: 1-64 of [A-Za-z0-9._-], first a letter or digit",
        "A GitHub App's name in this runtime",
        regex=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    ),
]
GithubId = Annotated[int, _meta("{name}={value!r} must be a positive integer", "A GitHub id", ge=1)]
PrivateKey = Annotated[
    str,
    _meta(
        "private_key is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)",
        "The App's private key, PEM",
        regex=r"\s*-----BEGIN (RSA )?PRIVATE KEY-----[A-Za-z0-9+/=\s]+-----END (RSA )?PRIVATE KEY-----\s*",
        max_length=16384,
    ),
]
RepoRef = Annotated[
    str,
    _meta(
        "{name}={value!r} is not a repository: expected owner/name or an http(s) URL",
        "owner/name, or an http(s) URL of a git repository",
        regex=r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|https?://[^\s@/]+(:\d+)?/\S+",
        max_length=2048,
    ),
]
GitRef = Annotated[
    str,
    _meta(
        "{name}={value!r} is not a git ref: no spaces, control characters, '..' or leading '-'",
        "A branch, tag or commit",
        check=lambda ref: (
            bool(re.fullmatch(r"[^\s\x00-\x1f~^:?*\[\\-][^\s\x00-\x1f~^:?*\[\\]{0,254}", ref)) and ".." not in ref
        ),
    ),
]
Depth = Annotated[int, _meta("{name}={value!r} must be at least 1", "How many commits to fetch", ge=1)]

_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda value, bound: value > bound,
    "ge": lambda value, bound: value >= bound,
    "lt": lambda value, bound: value < bound,
    "le": lambda value, bound: value <= bound,
    "min_length": lambda value, bound: len(value) >= bound,
    "max_length": lambda value, bound: len(value) <= bound,
}


def _kept(meta: msgspec.Meta, value: Any) -> bool:
    for bound, holds in _BOUNDS.items():
        limit = getattr(meta, bound)
        if limit is not None and not holds(value, limit):
            return False
    check: Callable[[Any], bool] | None = (meta.extra or {}).get("check")
    return check is None or bool(check(value))


def _shape(annotation: Any) -> type:
    """The Python type a member of a union decodes to (for picking the member a value took)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = annotation.__origin__
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        return origin
    return annotation if isinstance(annotation, type) else object


def _is(value: Any, shape: type) -> bool:
    if shape is float:  # MessagePack integers decode as int where a float is expected
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, shape)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the shape ``annotation`` describes, its rules aside."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _fits(value, annotation.__origin__)
    if origin in (Union, types.UnionType):
        return any(_fits(value, member) for member in typing.get_args(annotation))
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            _fits(item_key, key_type) and _fits(item, value_type) for item_key, item in value.items()
        )
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_fits(item, item_type) for item in value)
    if annotation is type(None):
        return value is None
    return _is(value, annotation) if isinstance(annotation, type) else True


def _broken(annotation: Any, value: Any, key: Any = None) -> tuple[str, Any, Any] | None:
    """The refusal (with its value and key) of the innermost rule ``value`` breaks, if any.

    A value of the wrong shape breaks no rule here: msgspec's message about its type says more.
    """
    if not _fits(value, annotation):
        return None
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner = _broken(annotation.__origin__, value, key)
        if inner is not None:
            return inner
        for meta in annotation.__metadata__:
            if isinstance(meta, msgspec.Meta) and not _kept(meta, value):
                return str((meta.extra or {}).get("refusal", "{name}={value!r} is not valid")), value, key
        return None
    if origin in (Union, types.UnionType):
        member = next((m for m in typing.get_args(annotation) if _is(value, _shape(m))), None)
        return None if member is None else _broken(member, value, key)
    if origin is dict and isinstance(value, dict):
        key_type, value_type = typing.get_args(annotation)
        for item_key, item in value.items():
            found = _broken(key_type, item_key, item_key) or _broken(value_type, item, item_key)
            if found is not None:
                return found
    elif origin is list and isinstance(value, list):
        (item_type,) = typing.get_args(annotation)
        for item in value:
            found = _broken(item_type, item, key)
            if found is not None:
                return found
    return None


def _has_rule(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return True
    return any(_has_rule(arg) for arg in typing.get_args(annotation))


@cache
def _ruled_fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, str, Any], ...]:
    """``(attribute, wire name, annotation)`` of each field of ``struct`` that has a rule."""
    hints = typing.get_type_hints(struct, include_extras=True)
    return tuple(
        (field.name, field.encode_name, hints[field.name])
        for field in msgspec.structs.fields(struct)
        if _has_rule(hints[field.name])
    )


def broken_rule(struct: type[msgspec.Struct], values: Any) -> str | None:
    """The refusal of the first rule ``values`` breaks: ``struct``'s fields, decoded or as a map.

    ``None`` when every rule holds (or ``values`` is not a map: its shape is wrong, which
    msgspec's own message says best).
    """
    ruled = _ruled_fields(struct)
    if not ruled:
        return None
    if isinstance(values, struct):
        present = {wire: getattr(values, name) for name, wire, _ in ruled}
    elif isinstance(values, dict):
        present = values
    else:
        return None
    for _, wire, annotation in ruled:
        if wire in present:
            found = _broken(annotation, present[wire])
            if found is not None:
                template, value, key = found
                return template.format(name=wire, value=value, key=key)
    return None


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
