"""The protocol's JSON Schema: committed as generated, valid, complete, and true to what the runtime sends."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zmq
from jsonschema import Draft202012Validator

from runtime.app import Runtime
from runtime.errors import WorkspaceError
from runtime.messages import (
    OPS,
    WELCOME,
    AnyEvent,
    ArgsStruct,
    CreateArgs,
    ExecArgs,
    ListArgs,
    NoArgs,
    ProcessExited,
    ProcessOutput,
    Request,
    WorkspaceArgs,
    WriteFileArgs,
    decode_as,
    encode,
)
from runtime.messages.schema import EVENTS, RESULTS, protocol_schema, render
from tests.conftest import ROOT, MakeSettings
from tests.fakes import FakeProvider
from tests.github_standins import private_key_pem

SCHEMA_FILE = ROOT / "docs" / "protocol.schema.json"
REGENERATE = "python -m runtime.messages.schema > docs/protocol.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return protocol_schema()


def validator(schema: dict[str, Any], part: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``part`` (a schema whose ``$ref``s point into ``schema``)."""
    return Draft202012Validator({**part, "$defs": schema["$defs"]})


def json_view(value: Any) -> Any:
    """A MessagePack message as the schema sees it (``bin`` as base64 strings)."""
    return msgspec.to_builtins(value)


def request_frame(op: str, args: ArgsStruct | dict[str, Any] | None = None, request_id: str = "r1") -> bytes:
    """A request as ``runtime.wire.Client`` encodes it."""
    return encode(Request(request_id, op, "t" * 43, msgspec.Raw(encode({} if args is None else args))))


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    assert committed == render(), f"{SCHEMA_FILE.relative_to(ROOT)} is out of date: run `{REGENERATE}`"


def test_the_schema_is_valid_json_schema_2020_12(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_op_has_its_args_and_result_in_x_ops(schema: dict[str, Any]) -> None:
    assert list(RESULTS) == list(OPS)
    assert list(schema["x-ops"]) == list(OPS)
    for op, struct in OPS.items():
        assert schema["x-ops"][op]["args"] == {"$ref": f"#/$defs/{struct.__name__}"}
        assert schema["x-ops"][op]["result"]


def test_every_event_type_has_its_topic(schema: dict[str, Any]) -> None:
    tags = {str(kind.__struct_config__.tag) for kind in (*typing.get_args(AnyEvent), ProcessOutput, ProcessExited)}
    assert set(schema["x-events"]) == set(EVENTS) == tags
    assert schema["x-events"]["workspace.state"]["topic"] == "workspace"
    assert schema["x-events"]["exec.output"]["topic"] == "exec.{workspace_id}.{process_id}"


def test_every_error_code_is_listed_with_its_default_retryability(schema: dict[str, Any]) -> None:
    codes: set[str] = set()
    pending: list[type[WorkspaceError]] = [WorkspaceError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    assert set(schema["x-errors"]) == codes
    assert {code for code, error in schema["x-errors"].items() if error["retryable"]} == {
        "capacity", "provider_unavailable", "timeout",
    }  # fmt: skip


def structs() -> dict[str, type[msgspec.Struct]]:
    """Every struct the schema describes, by name: the args, results and events, and what they hold."""
    found: dict[str, type[msgspec.Struct]] = {}
    pending: list[Any] = [*OPS.values(), *(kind for _, kind in EVENTS.values()), *RESULTS.values()]
    while pending:
        kind = pending.pop()
        if isinstance(kind, tuple):
            pending.extend(kind)
        elif isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            if kind.__name__ not in found:
                found[kind.__name__] = kind
                pending.extend(typing.get_type_hints(kind).values())
        else:
            pending.extend(typing.get_args(kind))
    return found


def test_bytes_fields_and_only_they_are_marked_as_msgpack_bin(schema: dict[str, Any]) -> None:
    expected = {
        (name, field)
        for name, struct in structs().items()
        for field, kind in typing.get_type_hints(struct).items()
        if kind in (bytes, bytes | None)
    }
    marked = {
        (name, field)
        for name, definition in schema["$defs"].items()
        for field, prop in definition.get("properties", {}).items()
        if prop.get("x-msgpack") == "bin" or any(arm.get("x-msgpack") == "bin" for arm in prop.get("anyOf", []))
    }
    assert marked == expected
    assert {("WriteFileArgs", "data"), ("ExecResult", "stdout"), ("ProcessOutput", "data")} <= marked
    assert ("GithubAppSetArgs", "private_key") not in marked  # PEM text is a str


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("ping", None),
        ("ping", NoArgs()),
        ("create", CreateArgs(cpu=0.5, memory="512M", labels={"team": "a"}, ttl_seconds=60)),
        ("get", WorkspaceArgs("ws_0123456789ab")),
        ("list", ListArgs(labels={"team": "a"}, state="ready")),
        ("exec", ExecArgs(workspace_id="ws_0123456789ab", cmd=["cat"], stdin=b"\x00\xff", timeout_s=5)),
        ("exec", ExecArgs(workspace_id="ws_0123456789ab", cmd="make test", stream=True, stdin_open=True)),
        ("write_file", WriteFileArgs(workspace_id="ws_0123456789ab", path="a.txt", data=b"\x89PNG", mode=0o644)),
        ("github_app_set", {"name": "ci-bot", "app_id": 1, "installation_id": 2, "private_key": "-----BEGIN"}),
    ],
)
def test_requests_as_the_client_encodes_them_validate(
    schema: dict[str, Any], op: str, args: ArgsStruct | dict[str, Any] | None
) -> None:
    message = msgspec.msgpack.decode(request_frame(op, args))
    validator(schema, {"$ref": "#/$defs/Request"}).validate(json_view(message))


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("create", {"cpu": 0}),  # a bound
        ("create", {"ttl_secs": 60}),  # an unknown field
        ("get", {}),  # a required field
        ("get", {"workspace_id": "ws_1", "labels": {}}),  # another op's field
        ("list", {"state": "gone"}),  # not a state
        ("exec", {"workspace_id": "ws_1", "cmd": []}),  # argv needs its program
        ("frobnicate", {}),  # not an op
    ],
)
def test_requests_the_server_refuses_do_not_validate(schema: dict[str, Any], op: str, args: dict[str, Any]) -> None:
    message = msgspec.msgpack.decode(request_frame(op, args))
    assert not validator(schema, {"$ref": "#/$defs/Request"}).is_valid(json_view(message))


# ---------------------------------------------------------------------- against a runtime


class Wire:
    """A third party's client: a DEALER speaking raw MessagePack, and a SUB on every topic."""

    def __init__(self, runtime: Runtime) -> None:
        self._context = zmq.Context()
        self.events = self._context.socket(zmq.SUB)
        self.events.setsockopt(zmq.SUBSCRIBE, b"")
        # The event stream admits a subscriber by ZeroMQ PLAIN: the protocol's username, the token.
        self.events.setsockopt(zmq.PLAIN_USERNAME, b"workspaces")
        self.events.setsockopt(zmq.PLAIN_PASSWORD, runtime.token.encode())
        self.events.connect(runtime.events_endpoint)
        assert self.events.poll(10_000) and self.events.recv_multipart() == [WELCOME]
        self.requests = self._context.socket(zmq.DEALER)
        self.requests.setsockopt(zmq.ROUTING_ID, b"schema-test")
        self.requests.connect(runtime.endpoint)
        self.token = runtime.token
        self.replies: list[tuple[str, dict[str, Any]]] = []
        self._count = 0

    def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        self._count += 1
        message: dict[str, Any] = {"id": f"r{self._count}", "op": op, "token": self.token}
        if args is not None:
            message["args"] = args
        self.requests.send(msgspec.msgpack.encode(message))
        assert self.requests.poll(10_000), f"no reply to {op}"
        reply = msgspec.msgpack.decode(self.requests.recv())
        self.replies.append((op, reply))
        assert reply["id"] == message["id"]
        return reply["result"] if reply["ok"] else reply["error"]

    def received_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while self.events.poll(200):
            frames = self.events.recv_multipart()
            if len(frames) == 2:
                yield frames[0].decode(), msgspec.msgpack.decode(frames[1])

    def close(self) -> None:
        self._context.destroy(linger=0)


@pytest.fixture
def wire(make_settings: MakeSettings) -> Iterator[Wire]:
    settings = make_settings(github_app_encryption_key=os.urandom(32))
    runtime = Runtime(settings, providers={"gvisor": FakeProvider()}).start()
    client = Wire(runtime)
    try:
        yield client
    finally:
        client.close()
        runtime.stop()


def test_what_a_runtime_answers_and_publishes_validates_and_decodes_as_the_results_table(
    schema: dict[str, Any], wire: Wire
) -> None:
    assert wire.call("ping")["ready"] is True
    wire.call("providers")
    workspace = wire.call("create", {"labels": {"team": "a"}, "memory": "512M"})["id"]
    on = {"workspace_id": workspace}
    wire.call("get", on)
    wire.call("list", {"labels": {"team": "a"}})
    wire.call("exec", {**on, "cmd": ["echo", "hi"], "stdin": b"\x00"})
    process = wire.call("exec", {**on, "cmd": "cat", "stream": True, "stdin_open": True})["process_id"]
    wire.call("exec_stdin", {**on, "process_id": process, "data": b"hello\n"})
    wire.call("exec_list", on)
    wire.call("exec_kill", {**on, "process_id": process, "signal": "KILL"})
    wire.call("exec_output", {**on, "process_id": process})
    wire.call("write_file", {**on, "path": "a.txt", "data": b"abc", "mode": 0o600})
    wire.call("read_file", {**on, "path": "a.txt"})
    wire.call("extend", {**on, "ttl_seconds": 600})
    wire.call("stats")
    wire.call("snapshot")
    pem = private_key_pem().decode()
    wire.call("github_app_set", {"name": "ci-bot", "app_id": 1, "installation_id": 2, "private_key": pem})
    wire.call("github_app_list")
    wire.call("github_key_rotate", {"key": os.urandom(32).hex()})
    wire.call("github_audit", {"limit": 10})
    wire.call("github_app_delete", {"name": "ci-bot"})
    wire.call("git_clone", {**on, "repo": "acme/tools"})
    wire.call("mcp_list")
    assert wire.call("mcp_call", {"name": "demo", "message": {"jsonrpc": "2.0", "id": 1, "method": "ping"}})
    wire.call("destroy", on)
    assert wire.call("get", {"workspace_id": "ws_000000000000"})["code"] == "not_found"

    answered = set()
    for op, reply in wire.replies:
        view = json_view(reply)
        validator(schema, {"$ref": "#/$defs/Reply"}).validate(view)
        if reply["ok"]:
            validator(schema, {"$ref": "#/$defs/OkReply"}).validate(view)
            validator(schema, schema["x-ops"][op]["result"]).validate(view["result"])
            answer = RESULTS[op]
            kinds = answer if isinstance(answer, tuple) else (answer,)
            assert any(_decodes(reply["result"], kind) for kind in kinds), (op, reply["result"])
            answered.add(op)
        else:
            validator(schema, {"$ref": "#/$defs/ErrorReply"}).validate(view)
            assert reply["error"]["code"] in schema["x-errors"]
    assert answered == set(OPS) - {"mcp_call"}  # mcp_call needs an MCP server: not_found here

    stats = next(reply["result"] for op, reply in wire.replies if op == "stats")
    assert set(stats) == set(typing.get_type_hints(RESULTS["stats"])), "stats answers other keys: update StatsResult"

    published = list(wire.received_events())
    assert {event["type"] for _, event in published} >= {"workspace.state", "github.app", "exec.output", "exec.exit"}
    for topic, event in published:
        described = schema["x-events"][event["type"]]
        validator(schema, described["schema"]).validate(json_view(event))
        assert topic == described["topic"].format(**event)


def _decodes(result: Any, kind: Any) -> bool:
    try:
        decode_as(encode(result), kind)
    except msgspec.ValidationError:
        return False
    return True
