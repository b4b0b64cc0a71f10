"""Any args of any op either decode or are refused as a bad request, and what decodes keeps the documented bounds.

The bounds checked here are written out from docs/protocol.md's "Limits" table, not read
from the code that enforces them.
"""

from __future__ import annotations

import math
import re
import signal as signals
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import BadRequest
from runtime.messages import OPS, decode_args, encode, invalid_args
from runtime.messages.limits import parse_size

MiB = 1 << 20

# ---------------------------------------------------------------------- values to try

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
EDGE_TEXT = st.builds(
    lambda char, count: char * count,
    st.sampled_from(["a", "A", "_", "9", " ", "/", ".", "\x00", ":", "-", "é", "\n"]),
    st.sampled_from([0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 257, 4096, 4097]),
)
TEXT = st.text(max_size=30) | EDGE_TEXT
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True) | TEXT
SIZES = (
    st.integers(min_value=-5, max_value=2**64 - 1)
    | st.sampled_from([6 * MiB - 1, 6 * MiB, MiB - 1, MiB, 1 << 40, (1 << 40) + 1, 64 << 40, (64 << 40) + 1])
    | st.from_regex(r"\s?[0-9]{1,4}(\.[0-9])?\s?[kmgtKMGT]?(i?[bB])?\s?", fullmatch=True)
    | TEXT
)
SECONDS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0, 1, 604800, 604800.5, 315360000, 315360000.5, 1e300]
)
BIG_MAPS = st.sampled_from([{f"K{n}": "v" for n in range(count)} for count in (64, 65, 256, 257)])


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


NESTED = st.integers(min_value=1, max_value=110).map(_nested)


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "workspace_id": st.just("ws_1") | st.from_regex(r"ws_[a-z0-9_-]{0,70}", fullmatch=True) | TEXT,
    "process_id": st.just("proc_1") | TEXT,
    "env": st.dictionaries(NAMES, TEXT, max_size=5) | BIG_MAPS,
    "labels": st.dictionaries(st.from_regex(r"[a-z0-9][a-z0-9./_-]{0,70}", fullmatch=True) | TEXT, TEXT, max_size=5)
    | BIG_MAPS,
    "image": st.sampled_from(["busybox", "python:3.12", "ghcr.io/o/r@sha256:" + "0" * 64, "Busybox", "a b"]) | TEXT,
    "memory": SIZES,
    "disk": SIZES,
    "cpu": SECONDS,
    "ttl_seconds": SECONDS,
    "timeout_s": SECONDS,
    "cmd": st.lists(TEXT, max_size=4) | TEXT | st.sampled_from([["x"] * 4096, ["x"] * 4097]),
    "path": TEXT,
    "cwd": TEXT,
    "signal": st.integers(min_value=-5, max_value=70) | st.sampled_from(["TERM", "kill", "SIGRTMIN", "15"]) | TEXT,
    "after": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "limit": st.integers(min_value=-5, max_value=1005),
    "depth": st.integers(min_value=-5, max_value=2**32) | st.sampled_from([2**31 - 1, 2**31]),
    "repo": st.sampled_from(["a/b", "https://github.com/a/b"]) | TEXT,
    "ref": st.just("main") | TEXT,
    "name": st.just("demo") | TEXT,
    "app": st.just("ci-bot") | TEXT,
    "message": st.dictionaries(st.text(max_size=8), ANYTHING, max_size=4) | NESTED,
    "key": TEXT,
    "provider": st.sampled_from(["gvisor", "e2b"]) | TEXT,
    "mode": st.integers(min_value=-5, max_value=0o10001),
    "data": st.binary(max_size=20),
    "stdin": st.none() | st.binary(max_size=20),
}


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
VALID: dict[str, list[Any]] = {
    "workspace_id": ["ws_1", "ws_0123456789ab"],
    "process_id": ["proc_0123456789ab"],
    "env": [{"A": "1"}, {}],
    "labels": [{"team": "a"}, {}],
    "image": ["busybox", "agent-workspaces/base:bookworm"],
    "memory": ["512M", 1 << 30],
    "disk": ["10G", 1 << 30],
    "cpu": [1, 0.5],
    "ttl_seconds": [60, 3600.5],
    "timeout_s": [10],
    "cmd": [["echo", "hi"], "true"],
    "path": ["a.txt"],
    "cwd": ["/workspace"],
    "signal": ["TERM", 9],
    "after": [0, 5],
    "limit": [10],
    "depth": [1],
    "repo": ["a/b"],
    "ref": ["main"],
    "name": ["demo"],
    "app": ["ci-bot"],
    "message": [{"jsonrpc": "2.0", "method": "ping", "id": 1}],
    "key": ["0" * 64],
    "provider": ["gvisor"],
    "mode": [0o644],
    "data": [b"x"],
    "stdin": [b"in"],
    "private_key": [PEM],
    "app_id": [1],
    "installation_id": [2],
    "state": ["ready"],
}


def args_of(op: str) -> st.SearchStrategy[Any]:
    """Maps of ``op``'s fields: required ones mostly plausible, the others present or not with
    values of every kind; sometimes a map of other keys, or not a map at all."""
    fields = msgspec.structs.fields(OPS[op])

    def value(name: str, wild: bool) -> st.SearchStrategy[Any]:
        plausible = st.sampled_from(VALID.get(name, [None])) | FIELDS.get(name, ANYTHING)
        return plausible | ANYTHING if wild else plausible

    shaped = st.fixed_dictionaries(
        {field.encode_name: value(field.encode_name, False) for field in fields if field.required},
        optional={field.encode_name: value(field.encode_name, True) for field in fields if not field.required},
    )
    return shaped | st.dictionaries(st.text(max_size=8), ANYTHING, max_size=3) | ANYTHING


# ---------------------------------------------------------------------- the documented bounds


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _no_nul(text: str) -> bool:
    return "\x00" not in text


def _env(env: dict[str, str]) -> bool:
    return (
        len(env) <= 256
        and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name, re.ASCII) for name in env)
        and all(len(value) <= 128 << 10 and _no_nul(value) for value in env.values())
        and sum(len(name) + len(value) + 2 for name, value in env.items()) <= MiB
    )


def _cmd(cmd: list[str] | str) -> bool:
    if isinstance(cmd, str):
        return bool(cmd.strip()) and len(cmd) <= MiB and _no_nul(cmd)
    return 1 <= len(cmd) <= 4096 and bool(cmd[0]) and sum(len(a) + 1 for a in cmd) <= MiB and all(map(_no_nul, cmd))


def _between(low: float, high: float) -> Any:
    return lambda value: low <= value <= high


DOCUMENTED: dict[str, Any] = {
    "workspace_id": lambda v: re.fullmatch(r"ws_[A-Za-z0-9_-]{1,61}", v),
    "process_id": lambda v: re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", v),
    "env": _env,
    "labels": lambda v: (
        len(v) <= 64
        and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}", k) and len(x) <= 256 for k, x in v.items())
    ),
    "image": lambda v: len(v) <= 255 and v.isascii() and not any(c.isspace() for c in v),
    "memory": lambda v: 6 * MiB <= parse_size(v) <= 1 << 40,
    "disk": lambda v: MiB <= parse_size(v) <= 64 << 40,
    "cpu": _between(0.01, 1024),
    "ttl_seconds": lambda v: 0 < v <= 315360000,
    "timeout_s": lambda v: 0 < v <= 604800,
    "cmd": _cmd,
    "path": lambda v: 1 <= len(v) <= 4096 and _no_nul(v),
    "cwd": lambda v: 1 <= len(v) <= 4096 and _no_nul(v),
    "signal": lambda v: 1 <= v < signals.NSIG if isinstance(v, int) else len(v) <= 32,
    "after": lambda v: v >= 0,
    "limit": _between(1, 1000),
    "depth": _between(1, 2**31 - 1),
    "repo": lambda v: len(v) <= 2048,
    "ref": lambda v: 1 <= len(v) <= 255 and ".." not in v,
    "name": lambda v: 1 <= len(v) <= 64,
    "app": lambda v: 1 <= len(v) <= 64,
    "message": lambda v: _depth(v) <= 100,
    "key": lambda v: len(v) <= 256,
    "provider": lambda v: 1 <= len(v) <= 64,
    "mode": _between(0, 0o7777),
}


def broken_bounds(args: msgspec.Struct) -> list[str]:
    """The fields of decoded ``args`` whose values are outside the documented bounds."""
    return [
        field.encode_name
        for field in msgspec.structs.fields(args)
        if field.encode_name in DOCUMENTED
        and (value := getattr(args, field.name)) is not None
        and not (isinstance(value, float) and math.isnan(value))
        and not DOCUMENTED[field.encode_name](value)
    ] + [field.encode_name for field in msgspec.structs.fields(args) if _is_nan(getattr(args, field.name))]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_args_decode_within_the_documented_bounds_or_are_a_bad_request(op: str, data: st.DataObject) -> None:
    args = data.draw(args_of(op), label="args")
    raw = msgspec.Raw(encode(args))
    try:
        decoded = decode_args(op, raw)
    except msgspec.DecodeError as exc:  # what the gateway answers: never another exception
        refusal = BadRequest(invalid_args(op, raw, exc))
        assert refusal.code == "bad_request"
        assert refusal.message.startswith(f"invalid args for {op}: ")
        assert len(refusal.message) < 1000
    else:
        assert broken_bounds(decoded) == []
