"""The codecs: round trips of every op's args, replies, typed results and events."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from runtime.messages import (
    OPS,
    OUTPUT_LIMIT,
    ActorCrashed,
    AlertCleared,
    AlertRaised,
    ArgsStruct,
    AuditArgs,
    BackendState,
    Command,
    ContainerEvent,
    CreateArgs,
    ErrorBody,
    ErrorReply,
    Event,
    ExecArgs,
    ExecKillArgs,
    ExecOutputArgs,
    ExecStdinArgs,
    ExtendArgs,
    GitCloneArgs,
    GithubAppArgs,
    GithubAppSetArgs,
    GithubKeyArgs,
    ListArgs,
    McpCallArgs,
    NoArgs,
    OkReply,
    Probe,
    ProcessOutput,
    ProviderHealthChanged,
    ReadFileArgs,
    ReplyTo,
    ResourceUsage,
    RunOptions,
    Snapshot,
    WorkspaceArgs,
    WorkspaceRecord,
    WorkspaceStateChanged,
    WriteFileArgs,
    codec,
    decode_args,
    decode_as,
    decode_event,
    decode_reply,
    decode_request,
    encode,
    exec_topic_prefix,
    process_topic,
)
from tests.github_standins import private_key_pem
from tests.runtime.messages.test_messages import record

PEM = private_key_pem().decode()

EXAMPLES: dict[type[ArgsStruct], list[ArgsStruct]] = {
    NoArgs: [NoArgs()],
    CreateArgs: [CreateArgs(), CreateArgs(
        provider="gvisor", image="busybox", cpu=0.5, memory="512M", disk=1 << 30, env={"A": "1"}, labels={"t": "a"},
        ttl_seconds=60.0, persistent=True,
    )],
    WorkspaceArgs: [WorkspaceArgs("ws_1")],
    ListArgs: [ListArgs(), ListArgs(labels={"team": "a"}, state="ready")],
    ExecArgs: [ExecArgs(workspace_id="ws_1", cmd="echo hi"), ExecArgs(
        workspace_id="ws_1", cmd=["cat", "-"], cwd="/tmp", env={"A": "1"}, stdin=b"\x00\xff", timeout_s=2.5,
        stdin_open=True, stream=True,
    )],
    ExecStdinArgs: [
        ExecStdinArgs(workspace_id="ws_1", process_id="p1"),
        ExecStdinArgs(workspace_id="ws_1", process_id="p1", data=b"in", close=True),
    ],
    ExecKillArgs: [
        ExecKillArgs(workspace_id="ws_1", process_id="p1"),
        ExecKillArgs(workspace_id="ws_1", process_id="p1", signal=9),
        ExecKillArgs(workspace_id="ws_1", process_id="p1", signal="KILL"),
    ],
    ExecOutputArgs: [ExecOutputArgs(workspace_id="ws_1", process_id="p1", after=7)],
    WriteFileArgs: [
        WriteFileArgs(workspace_id="ws_1", path="a/b.txt", data=b"x"),
        WriteFileArgs(workspace_id="ws_1", path="run.sh", data=b"#!/bin/sh\n", mode=0o755),
    ],
    ReadFileArgs: [ReadFileArgs(workspace_id="ws_1", path="a/b.txt")],
    ExtendArgs: [ExtendArgs(workspace_id="ws_1", ttl_seconds=3600.0)],
    GithubAppSetArgs: [GithubAppSetArgs(name="ci-bot", app_id=12, installation_id=34, private_key=PEM)],
    GithubAppArgs: [GithubAppArgs("ci-bot")],
    GithubKeyArgs: [GithubKeyArgs("00" * 32)],
    AuditArgs: [AuditArgs(), AuditArgs(after=7, limit=10)],
    GitCloneArgs: [
        GitCloneArgs(workspace_id="ws_1", repo="octo/hello"),
        GitCloneArgs(workspace_id="ws_1", repo="https://git.example.com/octo/hello.git", app="ci-bot", ref="main",
                     path="src/hello", depth=1),
    ],
    McpCallArgs: [
        McpCallArgs(name="demo", message={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        McpCallArgs(name="demo.v2", message={"jsonrpc": "2.0", "method": "notifications/cancelled",
                                             "params": {"requestId": "a", "reason": None}}),
    ],
}  # fmt: skip


def test_the_examples_cover_every_args_struct_of_the_op_table() -> None:
    assert set(OPS.values()) == set(EXAMPLES)


@pytest.mark.parametrize(
    ("op", "args"),
    [(op, args) for op, cls in OPS.items() for args in EXAMPLES[cls]],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_every_ops_args_round_trip_through_messagepack(op: str, args: ArgsStruct) -> None:
    assert decode_args(op, msgspec.Raw(encode(args))) == args
    request = decode_request(encode({"id": "r1", "op": op, "token": "t", "args": args}))
    assert decode_args(request.op, request.args) == args


@pytest.mark.parametrize("cls", [NoArgs, CreateArgs, ListArgs])
def test_args_left_at_their_defaults_encode_to_an_empty_map(cls: type[ArgsStruct]) -> None:
    assert encode(cls()) == encode({}) == b"\x80"


def test_only_the_fields_that_were_set_are_encoded() -> None:
    assert msgspec.msgpack.decode(encode(ExecArgs(workspace_id="ws_1", cmd="ls"))) == {
        "workspace_id": "ws_1",
        "cmd": "ls",
    }
    assert msgspec.msgpack.decode(encode(ExecArgs(workspace_id="ws_1", cmd=["ls"], stream=True, timeout_s=1.5))) == {
        "workspace_id": "ws_1", "cmd": ["ls"], "stream": True, "timeout_s": 1.5,
    }  # fmt: skip
    assert msgspec.msgpack.decode(encode(CreateArgs(cpu=2.0, persistent=False, env={}))) == {"cpu": 2.0}
    assert msgspec.msgpack.decode(encode(ExecKillArgs(workspace_id="ws_1", process_id="p", signal="TERM"))) == {
        "workspace_id": "ws_1", "process_id": "p",
    }  # fmt: skip


def test_an_ok_reply_decodes_with_its_result_left_raw_until_its_type_is_known() -> None:
    reply = decode_reply(encode(OkReply("r1", record())))
    assert (reply.id, reply.ok, reply.error) == ("r1", True, None)
    assert isinstance(reply.result, msgspec.Raw)
    assert decode_as(reply.result, WorkspaceRecord) == record()


def test_an_error_reply_decodes_with_its_error_body_and_a_nil_result() -> None:
    reply = decode_reply(encode(ErrorReply("r2", ErrorBody("capacity", "full", True))))
    assert (reply.id, reply.ok) == ("r2", False)
    assert reply.error == ErrorBody("capacity", "full", True)
    assert msgspec.msgpack.decode(reply.result) is None
    wire = msgspec.msgpack.decode(encode(ErrorReply("r2", ErrorBody("capacity", "full", True))))
    assert wire == {"id": "r2", "ok": False, "error": {"code": "capacity", "message": "full", "retryable": True}}


@pytest.mark.parametrize(
    "frame",
    [
        encode({"id": "r", "result": 1}),
        encode({"id": "r", "ok": "yes"}),
        encode({"id": "r", "ok": False, "error": {"code": "x"}}),
        b"\xc1",
    ],
)
def test_a_malformed_reply_raises_a_decode_error(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_reply(frame)


def test_decode_as_decodes_a_list_of_records_from_bytes_or_raw() -> None:
    records = [record(), record(id="ws_2", state="creating", labels={})]
    assert decode_as(encode(records), list[WorkspaceRecord]) == records
    assert decode_as(msgspec.Raw(encode(records)), list[WorkspaceRecord]) == records
    assert decode_as(encode(Snapshot(3, records)), Snapshot) == Snapshot(3, records)
    with pytest.raises(msgspec.ValidationError):
        decode_as(encode([{"id": "ws_1"}]), list[WorkspaceRecord])


def test_decode_as_builds_one_decoder_per_type_and_reuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fresh(msgspec.Struct):  # a type no other test has decoded yet
        n: int

    built: list[Any] = []
    real = msgspec.msgpack.Decoder

    def counting(kind: Any = Any, **options: Any) -> Any:
        built.append(kind)
        return real(kind, **options)

    monkeypatch.setattr(codec.msgspec.msgpack, "Decoder", counting)
    frame = encode([Fresh(1), Fresh(2)])
    assert decode_as(frame, list[Fresh]) == [Fresh(1), Fresh(2)]
    assert decode_as(frame, list[Fresh]) == [Fresh(1), Fresh(2)]  # an equal alias, built anew
    assert decode_as(encode(Fresh(3)), Fresh) == Fresh(3)
    assert built == [list[Fresh], Fresh]


EVENTS: list[Event] = [
    WorkspaceStateChanged(seq=1, ts=1.5, workspace_id="ws_1", state="ready", record=record(), reason="made"),
    AlertRaised(seq=2, ts=2.0, key="host.cpu", resource="cpu", message="CPU at 95%", value=95.0, limit=100.0),
    AlertCleared(
        seq=3,
        ts=3.0,
        key="ws.mem",
        resource="memory",
        message="ok",
        value=1.0,
        limit=2.0,
        workspace_id="ws_1",
        threshold=0.8,
    ),
    ActorCrashed(seq=4, ts=4.0, actor="WorkspaceActor", reason="boom", restarted=True, workspace_id="ws_1"),
    ProviderHealthChanged(seq=5, ts=5.0, provider="gvisor", healthy=False, detail="daemon down", runtime="runsc"),
]


@pytest.mark.parametrize(
    ("event", "tag", "topic"),
    list(
        zip(
            EVENTS,
            ["workspace.state", "alert.raised", "alert.cleared", "actor.crashed", "provider.health"],
            ["workspace", "alert", "alert", "actor", "provider"],
            strict=True,
        )
    ),
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_each_event_type_round_trips_by_its_type_tag(event: Event, tag: str, topic: str) -> None:
    wire = msgspec.msgpack.decode(encode(event))
    assert wire["type"] == tag
    assert (wire["seq"], wire["ts"]) == (event.seq, event.ts)
    decoded = decode_event(encode(event))
    assert type(decoded) is type(event)
    assert decoded == event
    assert type(event).topic == topic


@pytest.mark.parametrize(
    "frame",
    [
        encode({"type": "workspace.exploded", "seq": 1}),
        encode({"seq": 1, "ts": 1.0}),
        encode(ProcessOutput(seq=1, ts=1.0, workspace_id="ws_1", process_id="p", stream="stdout", data=b"x")),
    ],
)
def test_decode_event_refuses_what_the_state_log_never_records(frame: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(frame)


def test_exec_argv_is_the_list_as_given_or_a_string_run_by_sh() -> None:
    assert ExecArgs(workspace_id="ws_1", cmd="echo hi | wc -c").argv == ["sh", "-c", "echo hi | wc -c"]
    argv = ["printf", "%s", "a b"]
    args = ExecArgs(workspace_id="ws_1", cmd=argv)
    assert args.argv == argv
    args.argv.append("changed")  # a copy: the request's own list stays as it came
    assert args.cmd == ["printf", "%s", "a b"]


def test_a_command_and_exec_args_carry_every_run_option() -> None:
    options = set(RunOptions.__struct_fields__)
    assert options == {"cwd", "env", "stdin", "timeout_s", "stdin_open"}
    assert options <= set(Command.__struct_fields__)
    assert options <= set(ExecArgs.__struct_fields__)
    args = ExecArgs(workspace_id="ws_1", cmd=["cat"], cwd="/tmp", env={"A": "1"}, stdin=b"x", timeout_s=3.0)
    command = Command(argv=args.argv, **{name: getattr(args, name) for name in options})
    assert (command.cwd, command.env, command.stdin, command.timeout_s) == ("/tmp", {"A": "1"}, b"x", 3.0)
    assert command.output_limit == OUTPUT_LIMIT == 8 << 20


@pytest.mark.parametrize(
    "value",
    [
        Command(argv=["ls"], env={"A": "1"}, output_limit=10),
        Probe(healthy=True, runtime="runsc", detail="fallback", data_root="/var/lib/docker"),
        BackendState(workspace_id="ws_1", handle="aw-ws_1", running=False, detail="exit 137"),
        ResourceUsage(cpu_seconds=1.5, memory_bytes=1 << 20),
        ContainerEvent("ws_1", "oom", "killed at the limit"),
    ],
    ids=lambda value: type(value).__name__,
)
def test_backend_messages_round_trip(value: msgspec.Struct) -> None:
    assert msgspec.msgpack.decode(encode(value), type=type(value)) == value


def test_a_reply_key_joins_the_hex_identity_and_the_request_id() -> None:
    assert ReplyTo(b"\x01\xff", "r1").key == "01ff:r1"
    assert ReplyTo(b"client-1", "abc-2").key == "636c69656e742d31:abc-2"
    assert ReplyTo(b"\x01\xff", "").key == ""  # requests without an id are never matched


def test_a_process_topic_starts_with_its_workspaces_prefix() -> None:
    assert exec_topic_prefix("ws_1") == "exec.ws_1."
    assert process_topic("ws_1", "p7") == "exec.ws_1.p7"
    assert process_topic("ws_1", "p7").startswith(exec_topic_prefix("ws_1"))
    assert not process_topic("ws_10", "p7").startswith(exec_topic_prefix("ws_1"))
