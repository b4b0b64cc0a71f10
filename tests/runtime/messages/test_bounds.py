"""Every bound of docs/protocol.md's "Limits": its largest value is accepted, one past it refused.

A refusal is what the gateway answers: ``bad_request`` with ``invalid args for OP:``, the
field's name and what is accepted; a long value is quoted only in part.
"""

from __future__ import annotations

import re
import signal as signals
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import pytest

from runtime.errors import BadRequest
from runtime.messages import OPS, Request, decode_args, decode_request, encode, invalid_args
from runtime.messages.limits import parse_size
from tests.conftest import ROOT

MiB = 1 << 20
_FIELD = re.compile(r"`([a-z_]+)`")
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def outcome(op: str, args: Any) -> Any:
    """``args`` decoded for ``op``, or the ``BadRequest`` the gateway answers instead."""
    raw = msgspec.Raw(encode(args))
    try:
        return decode_args(op, raw)
    except msgspec.DecodeError as exc:
        return BadRequest(invalid_args(op, raw, exc))


def accepted(op: str, args: Any) -> Any:
    decoded = outcome(op, args)
    assert not isinstance(decoded, BadRequest), decoded.message
    return decoded


def refused(op: str, args: Any) -> BadRequest:
    answer = outcome(op, args)
    assert isinstance(answer, BadRequest), f"{op} accepted {args!r:.200}"
    assert answer.code == "bad_request"
    return answer


@dataclass(frozen=True)
class Bound:
    """One bound: ``args(value)`` of ``op``, the largest value kept, the first one refused."""

    op: str
    args: Callable[[Any], dict[str, Any]]
    largest: Any
    past: Any
    refusal: str  # the refusal starts with this (after "invalid args for OP: ")


def ws(**fields: Any) -> Callable[[Any], dict[str, Any]]:
    """Args of an op addressing ``ws_1``; the field named ``"_"`` takes the value."""
    (name,) = [key for key, value in fields.items() if value is None]
    rest = {key: value for key, value in fields.items() if value is not None}
    return lambda value: {"workspace_id": "ws_1", **rest, name: value}


def one(field: str, **rest: Any) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {**rest, field: value}


def env_of(total: int) -> dict[str, str]:
    """Eight variables whose names and values (with ``=`` and NUL) come to ``total`` characters."""
    each, extra = divmod(total - 8 * 4, 8)
    return {f"V{n}": "x" * (each + (extra if n == 0 else 0)) for n in range(8)}


def many(count: int, prefix: str = "K") -> dict[str, str]:
    return {f"{prefix}{n}": "v" for n in range(count)}


KILL = ws(process_id="p", signal=None)
BOUNDS = {
    "env name length": Bound("create", one("env"), {"A" * 255: "v"}, {"A" * 256: "v"}, "env name 'AAAA"),
    "env value length": Bound(
        "create", one("env"), {"A": "v" * (128 << 10)}, {"A": "v" * (128 << 10 | 1)}, "env value of A is not valid"
    ),
    "env count": Bound("create", one("env"), many(256), many(257), "env has too many variables: at most 256"),
    "env total": Bound("create", one("env"), env_of(MiB), env_of(MiB + 1), "env is too large: at most 1048576"),
    "exec env count": Bound("exec", ws(cmd="true", env=None), many(256), many(257), "env has too many variables"),
    "labels count": Bound("create", one("labels"), many(64), many(65), "labels has too many labels: at most 64"),
    "list labels count": Bound("list", one("labels"), many(64), many(65), "labels has too many labels: at most 64"),
    "label key": Bound("create", one("labels"), {"k" * 63: "v"}, {"k" * 64: "v"}, "label 'kkk"),
    "label value": Bound("create", one("labels"), {"k": "v" * 256}, {"k": "v" * 257}, "label 'k' is not valid"),
    "image length": Bound("create", one("image"), "a" * 255, "a" * 256, "image='aaa"),
    "image tag": Bound("create", one("image"), "busybox:" + "t" * 128, "busybox:" + "t" * 129, "image='busybox:ttt"),
    "write_file path": Bound("write_file", ws(data=b"x", path=None), "p" * 4096, "p" * 4097, "path='ppp"),
    "read_file path": Bound("read_file", ws(path=None), "p" * 4096, "p" * 4097, "path='ppp"),
    "git_clone path": Bound("git_clone", ws(repo="a/b", path=None), "p" * 4096, "p" * 4097, "path='ppp"),
    "exec cwd": Bound("exec", ws(cmd="true", cwd=None), "/" * 4096, "/" * 4097, "cwd='///"),
    "memory least": Bound("create", one("memory"), 6 * MiB, 6 * MiB - 1, "memory=6291455 is below the minimum of 6M"),
    "memory most": Bound("create", one("memory"), 1 << 40, (1 << 40) + 1, "memory=1099511627777 is above the maximum"),
    "memory text": Bound("create", one("memory"), "1024G", "1025G", "memory='1025G' is above the maximum of 1T"),
    "memory text length": Bound("create", one("memory"), " " * 29 + "4G ", " " * 30 + "4G ", "memory=' "),
    "disk least": Bound("create", one("disk"), MiB, MiB - 1, "disk=1048575 is below the minimum of 1M"),
    "disk most": Bound("create", one("disk"), "64T", "65T", "disk='65T' is above the maximum of 64T"),
    "argv items": Bound("exec", ws(cmd=None), ["x"] * 4096, ["x"] * 4097, "cmd is too large or has a NUL byte"),
    "argv length": Bound("exec", ws(cmd=None), ["x" * (MiB - 1)], ["x" * MiB], "cmd is too large or has a NUL byte"),
    "shell length": Bound("exec", ws(cmd=None), "x" * MiB, "x" * (MiB + 1), "cmd is too large or has a NUL byte"),
    "ttl_seconds": Bound("create", one("ttl_seconds"), 315360000, 315360000.5, "ttl_seconds=315360000.5 must be > 0"),
    "extend ttl": Bound("extend", ws(ttl_seconds=None), 315360000, 315360001, "ttl_seconds=315360001 must be > 0"),
    "timeout_s": Bound("exec", ws(cmd="true", timeout_s=None), 604800, 604800.5, "timeout_s=604800.5 must be > 0"),
    "workspace_id": Bound("get", one("workspace_id"), "ws_" + "a" * 61, "ws_" + "a" * 62, "workspace_id='ws_aaa"),
    "process_id": Bound("exec_output", ws(process_id=None), "p" * 64, "p" * 65, "process_id='ppp"),
    "signal number": Bound("exec_kill", KILL, signals.NSIG - 1, signals.NSIG, f"signal={signals.NSIG} is not a signal"),
    "signal name": Bound("exec_kill", KILL, "SIGRTMIN", "SIG" + "K" * 30, "signal='SIGKKK"),
    "output after": Bound("exec_output", ws(process_id="p", after=None), 0, -1, "after=-1 must be at least 0"),
    "audit after": Bound("github_audit", one("after"), 0, -1, "after=-1 must be at least 0"),
    "audit limit": Bound("github_audit", one("limit"), 1000, 1001, "limit=1001 is out of range: expected 1 to 1000"),
    "app name": Bound("github_app_delete", one("name"), "a" * 64, "a" * 65, "name='aaa"),
    "private key": Bound(
        "github_app_set",
        lambda key: {"name": "a", "app_id": 1, "installation_id": 1, "private_key": key},
        PEM.replace("MII", "M" * (16384 - len(PEM) + 3)),  # 16384 characters
        PEM.replace("MII", "M" * (16384 - len(PEM) + 4)),
        "private_key is not a PEM private key",
    ),
    "encryption key": Bound("github_key_rotate", one("key"), "k" * 256, "k" * 257, "key is not an encryption key"),
    "repo": Bound("git_clone", ws(repo=None), "a/" + "b" * 2046, "a/" + "b" * 2047, "repo='a/bbb"),
    "git ref": Bound("git_clone", ws(repo="a/b", ref=None), "r" * 255, "r" * 256, "ref='rrr"),
    "depth": Bound("git_clone", ws(repo="a/b", depth=None), 2**31 - 1, 2**31, "depth=2147483648 must be from 1"),
    "mcp name": Bound("mcp_call", lambda name: {"name": name, "message": {}}, "m" * 63, "m" * 64, "name='mmm"),
    "mcp nesting": Bound(
        "mcp_call",
        lambda levels: {"name": "m", "message": nested(levels)},
        100,
        101,
        "message is nested more than 100 levels deep",
    ),
    "provider": Bound("create", one("provider"), "p" * 64, "p" * 65, "provider='ppp"),
    "cpu": Bound("create", one("cpu"), 1024, 1024.5, "cpu=1024.5 is out of range"),
    "file mode": Bound("write_file", ws(path="a", data=b"", mode=None), 0o7777, 0o10000, "mode=4096 is not a file"),
}  # fmt: skip


def nested(levels: int) -> dict[str, Any]:
    """A map ``levels`` deep (counting itself)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("bound", BOUNDS.values(), ids=BOUNDS.keys())
def test_the_largest_value_of_each_bound_is_accepted_and_one_past_it_refused_naming_the_field(bound: Bound) -> None:
    accepted(bound.op, bound.args(bound.largest))
    answer = refused(bound.op, bound.args(bound.past))
    assert answer.message.startswith(f"invalid args for {bound.op}: {bound.refusal}"), answer.message
    assert len(answer.message) < 400  # the value is quoted in part, never whole


@pytest.mark.parametrize(
    "image",
    [
        "busybox", "python:3.12-slim", "agent-workspaces/base:bookworm", "ghcr.io/vndee/sandbox-python-311-bullseye",
        "localhost:5000/team/tool:v1.2", "registry.example.com/a__b/c-d.e:TAG_1", "[::1]:5000/x",
        "busybox@sha256:" + "a" * 64, "name:tag@sha512:" + "F" * 128, "My.Registry:443/lower/case",
        "base", "code-interpreter-v1", "rki5dems9wqfm4r03t7g",  # E2B templates: names and ids
    ],
)  # fmt: skip
def test_image_references_of_dockers_grammar_and_e2b_template_names_are_accepted(image: str) -> None:
    assert accepted("create", {"image": image}).image == image


@pytest.mark.parametrize(
    "image",
    [
        "Busybox", "owner/Repo", "a b", "busybox:", ":tag", "busybox:-x", "a//b", "a/", "/a", "a_-b", "a..b",
        "busybox@sha256:abc", "busybox@sha256:" + "g" * 64, "busybox\n", "bu\x00sy", "bùsybox", "busybox:t\u0661",
        "http://registry/x", "-a",
    ],
)  # fmt: skip
def test_other_image_references_are_refused_naming_the_field(image: str) -> None:
    assert refused("create", {"image": image}).message.startswith(f"invalid args for create: image={image[:64]!r}")


@pytest.mark.parametrize(
    ("op", "args", "refusal"),
    [
        ("create", {"env": {"A": "a\x00"}}, "env value of A is not valid"),
        ("write_file", {"workspace_id": "ws_1", "path": "a\x00b", "data": b""}, "path='a\\x00b' is not a path"),
        ("write_file", {"workspace_id": "ws_1", "path": "", "data": b""}, "path is empty"),
        ("exec", {"workspace_id": "ws_1", "cmd": ["ls", "a\x00"]}, "cmd is too large or has a NUL byte"),
        ("exec", {"workspace_id": "ws_1", "cmd": "ls\x00"}, "cmd is too large or has a NUL byte"),
        ("get", {"workspace_id": "w"}, "workspace_id='w' is not a workspace id"),
        ("get", {"workspace_id": "ws_"}, "workspace_id='ws_' is not a workspace id"),
        ("get", {"workspace_id": "ws_a/b"}, "workspace_id='ws_a/b' is not a workspace id"),
        ("exec_kill", {"workspace_id": "ws_1", "process_id": "p", "signal": "BOGUS"}, "signal='BOGUS' is not a signal"),
        ("exec_kill", {"workspace_id": "ws_1", "process_id": "p", "signal": 0}, "signal=0 is not a signal"),
        ("create", {"memory": "9" * 31}, "memory='" + "9" * 31 + "' is above the maximum of 1T"),
        ("create", {"memory": "1e3G"}, "memory='1e3G' is not a size"),
        ("create", {"disk": "0.5"}, "disk='0.5' is not a size"),
    ],
)
def test_nul_bytes_empty_paths_foreign_ids_and_bad_sizes_are_refused_naming_the_field(
    op: str, args: dict[str, Any], refusal: str
) -> None:
    assert refused(op, args).message.startswith(f"invalid args for {op}: {refusal}")


def test_an_encryption_key_that_is_too_long_is_refused_without_being_quoted() -> None:
    assert refused("github_key_rotate", {"key": "s3cret" * 50}).message == (
        "invalid args for github_key_rotate: key is not an encryption key: expected 64 hex digits or base64 of 32 bytes"
    )


def test_maps_nested_past_what_the_decoder_can_follow_are_refused_not_crashed_on() -> None:
    deep = b"\x82\xa4name\xa1m\xa7message\x81\xa1a" + b"\x91" * 100_000 + b"\xc0"
    raw = msgspec.Raw(deep)
    with pytest.raises(msgspec.DecodeError) as caught:
        decode_args("mcp_call", raw)
    assert invalid_args("mcp_call", raw, caught.value) == (
        "invalid args for mcp_call: args are nested too deeply: at most 100 levels of maps and arrays"
    )


@pytest.mark.parametrize(("field", "largest"), [("id", 256), ("op", 64)])
def test_a_request_envelope_bounds_its_id_and_op(field: str, largest: int) -> None:
    fields = {"id": "r", "op": "ping", "token": "t", field: "x" * largest}
    assert getattr(decode_request(encode(fields)), field) == "x" * largest
    with pytest.raises(msgspec.ValidationError, match=rf"length <= {largest} - at `\$\.{field}`"):
        decode_request(encode({**fields, field: "x" * (largest + 1)}))
    assert Request("r", "ping").id == "r"


@pytest.mark.parametrize(
    ("text", "size"),
    [("4G", 4 << 30), (" 512m ", 512 << 20), ("1.5g", 3 << 29), ("4GiB", 4 << 30), ("7", 7), (6 << 20, 6 << 20)],
)
def test_sizes_are_parsed_as_before(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["9" * 400 + "G", "1e9", "0", "0.4", "-1", "lots", True, 0, -5, "4G" + " " * 31])
def test_sizes_that_are_not_positive_or_too_long_raise_value_error_only(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_every_bounded_field_of_every_op_has_a_row_in_the_limits_table() -> None:
    limits = (ROOT / "docs" / "protocol.md").read_text().split("## 16. Limits", 1)[1]
    documented = {
        name for row in limits.splitlines() if row.startswith("| `") for name in _FIELD.findall(row.split("|")[1])
    }
    for struct in OPS.values():
        hints = typing.get_type_hints(struct, include_extras=True)
        for field in msgspec.structs.fields(struct):
            if "Annotated" in str(hints[field.name]) or typing.get_origin(hints[field.name]) is Literal:
                assert field.encode_name in documented, f"{struct.__name__}.{field.name} has no row"
