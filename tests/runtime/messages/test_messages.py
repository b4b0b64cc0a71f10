"""The vocabulary round-trips through MessagePack and refuses malformed input."""

from __future__ import annotations

import msgspec
import pytest

from runtime.messages import (
    OPS,
    CreateArgs,
    ExecArgs,
    ExecResult,
    StoredWorkspace,
    WorkspaceRecord,
    WorkspaceSpec,
    WorkspaceStateChanged,
    decode_args,
    decode_event,
    decode_request,
    decode_stored,
    encode,
)


def record(**changes: object) -> WorkspaceRecord:
    values: dict[str, object] = {
        "id": "ws_0123456789ab",
        "state": "ready",
        "provider": "gvisor",
        "runtime": "runsc",
        "image": "agent-workspaces/base:bookworm",
        "cpu": 2.0,
        "memory_bytes": 4 << 30,
        "disk_bytes": 10 << 30,
        "labels": {"team": "a"},
        "persistent": False,
        "created_at": 1.0,
        "expires_at": 2.0,
    }
    values.update(changes)
    return WorkspaceRecord(**values)  # type: ignore[arg-type]


def test_a_request_envelope_decodes_and_its_args_decode_per_op() -> None:
    frame = encode({"id": "r1", "op": "create", "token": "t", "args": {"memory": "512M", "labels": {"k": "v"}}})
    request = decode_request(frame)
    assert (request.id, request.op, request.token) == ("r1", "create", "t")
    args = decode_args("create", request.args)
    assert args == CreateArgs(memory="512M", labels={"k": "v"})


def test_missing_args_mean_an_empty_map() -> None:
    request = decode_request(encode({"id": "r1", "op": "ping", "token": "t"}))
    assert decode_args("ping", request.args) == OPS["ping"]()


def test_exec_takes_argv_or_a_shell_string_and_binary_stdin() -> None:
    argv = decode_args(
        "exec", msgspec.Raw(encode({"workspace_id": "ws_1", "cmd": ["echo", "hi"], "stdin": b"\x00\xff"}))
    )
    assert isinstance(argv, ExecArgs)
    assert argv.cmd == ["echo", "hi"]
    assert argv.stdin == b"\x00\xff"
    shell = decode_args("exec", msgspec.Raw(encode({"workspace_id": "ws_1", "cmd": "echo hi | wc"})))
    assert isinstance(shell, ExecArgs)
    assert shell.cmd == "echo hi | wc"


@pytest.mark.parametrize(
    ("op", "args", "error"),
    [
        ("create", {"cpu": "two"}, "Expected `float | null`, got `str`"),
        ("create", {"colour": "red"}, "unknown field `colour`"),
        ("exec", {"cmd": ["ls"]}, "missing required field `workspace_id`"),
        ("exec", {"workspace_id": "ws_1", "cmd": 3}, "Expected `str | array`, got `int`"),
        ("get", [], "Expected `object`, got `array`"),
    ],
)
def test_invalid_args_are_refused_with_the_reason(op: str, args: object, error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=msgspec_escape(error)):
        decode_args(op, msgspec.Raw(encode(args)))


def msgspec_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    "frame", [b"", b"\xc1", b"\x93\x01\x02\x03", encode({"op": "ping"}), encode({"id": 1, "op": "x"})]
)
def test_malformed_envelopes_raise_decode_errors(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_request(frame)


def test_records_and_exec_results_keep_every_field_on_the_wire() -> None:
    wire = msgspec.msgpack.decode(encode(record()))
    assert set(wire) == {
        "id", "state", "provider", "runtime", "image", "cpu", "memory_bytes", "disk_bytes",
        "labels", "persistent", "created_at", "expires_at", "from_pool", "error",
        "oom_kills", "disk_used_bytes", "fallback_from",
    }  # fmt: skip
    result = msgspec.msgpack.decode(encode(ExecResult(exit_code=3, stdout=b"o", stderr=b"e")))
    assert result == {
        "exit_code": 3, "stdout": b"o", "stderr": b"e", "timed_out": False, "duration_ms": 0.0, "via": "",
    }  # fmt: skip


def test_stored_workspaces_round_trip_with_their_private_spec() -> None:
    spec = WorkspaceSpec(
        workspace_id="ws_0123456789ab", image="img", cpu=1.0, memory_bytes=1, disk_bytes=2, env={"A": "1"}, labels={}
    )
    stored = StoredWorkspace(record=record(), spec=spec, handle="aw-ws_0123456789ab")
    assert decode_stored(encode(stored)) == stored


def test_events_carry_type_seq_and_ts_and_round_trip() -> None:
    event = WorkspaceStateChanged(seq=7, ts=3.5, workspace_id="ws_1", state="ready", record=record())
    wire = msgspec.msgpack.decode(encode(event))
    assert wire["type"] == "workspace.state"
    assert (wire["seq"], wire["ts"]) == (7, 3.5)
    assert decode_event(encode(event)) == event
    assert WorkspaceStateChanged.topic == "workspace"
