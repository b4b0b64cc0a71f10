"""How the rules of ``runtime.messages.rules`` are written down, checked and worded.

A rule is an ``Annotated`` type whose ``msgspec.Meta`` (one or more: each with its own
refusal) carries the rule's bounds and, in ``extra``, its refusal and, where a bound is
not msgspec's, its ``check``. ``broken_rule`` finds the first refusal a value earns and
words it; a long value is quoted only in part, so a refusal stays short however large
the value that earned it.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Final, Union

import msgspec

__all__ = ["QUOTED_CHARS", "broken_rule", "meta"]

QUOTED_CHARS: Final = 64
"""Characters of a value a refusal quotes; a longer value is cut there and its length said."""


def meta(
    refusal: str,
    description: str | None = None,
    *,
    regex: str | None = None,
    check: Callable[[Any], bool] | None = None,
    **bounds: Any,
) -> msgspec.Meta:
    """A rule's ``Meta``: msgspec's ``bounds``, and ``regex`` (the whole value must match) or ``check``.

    ``refusal`` is a template over ``name`` (the field), ``value`` and, inside maps, ``key``.
    """
    extra: dict[str, Any] = {"refusal": refusal}
    if regex is not None:
        fullmatch = re.compile(regex).fullmatch  # unlike `$`, no newline may slip in after the match
        extra["check"] = lambda value: fullmatch(value) is not None
    elif check is not None:
        extra["check"] = check
    return msgspec.Meta(description=description, extra=extra, **bounds)


class _Clipped:
    """A long string as a refusal quotes it: its start, and how long it is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"{self.text[:QUOTED_CHARS]!r}... ({len(self.text)} characters)"

    def __format__(self, spec: str) -> str:
        return f"{self.text[:QUOTED_CHARS]}... ({len(self.text)} characters)"


_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")
"""The user information of a URL (``https://x-access-token:TOKEN@host/...``): never quoted."""


def _quoted(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = _CREDENTIALS.sub("***@", value)
    return _Clipped(value) if len(value) > QUOTED_CHARS else value


_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda value, bound: value > bound,
    "ge": lambda value, bound: value >= bound,
    "lt": lambda value, bound: value < bound,
    "le": lambda value, bound: value <= bound,
    "min_length": lambda value, bound: len(value) >= bound,
    "max_length": lambda value, bound: len(value) <= bound,
}


def _kept(rule: msgspec.Meta, value: Any) -> bool:
    for bound, holds in _BOUNDS.items():
        limit = getattr(rule, bound)
        if limit is not None and not holds(value, limit):
            return False
    check: Callable[[Any], bool] | None = (rule.extra or {}).get("check")
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
    if shape is Any:  # a class since Python 3.11, but not one isinstance takes
        return True
    if isinstance(value, bool):  # a bool is no number here, as msgspec decodes it
        return shape in (bool, object)
    if shape is float:  # MessagePack integers decode as int where a float is expected
        return isinstance(value, int | float)
    return isinstance(value, shape)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the shape ``annotation`` describes, its rules aside."""
    if annotation is Any:
        return True
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
        for rule in annotation.__metadata__:
            if isinstance(rule, msgspec.Meta) and not _kept(rule, value):
                return str((rule.extra or {}).get("refusal", "{name}={value!r} is not valid")), value, key
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
                return template.format(name=wire, value=_quoted(value), key=_quoted(key))
    return None
