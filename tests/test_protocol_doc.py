"""docs/protocol.md tells the truth: its ops, error codes and event types are the code's, and its examples decode.

The page has a stable shape these tests read: in the section ``## N. Ops`` one heading
``### `op` `` per op; in ``## N. Error codes`` one table row ``| `code` | yes/no | ...``
per code (yes: retryable by default); in ``## N. Events`` one heading ``### `type` on topic
`topic` `` per event type. Examples are ``json`` code blocks in which ``"<bin: TEXT>"``
stands for the bytes of TEXT (a MessagePack bin).
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from actors.routing import ROUTES
from runtime.errors import WorkspaceError
from runtime.messages import (
    OPS,
    AnyEvent,
    ProcessExited,
    ProcessOutput,
    decode_args,
    decode_as,
    decode_reply,
    decode_request,
    encode,
)
from runtime.messages.schema import EVENTS, RESULTS, protocol_schema
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "protocol.md").read_text()
_SECTION = re.compile(r"^## (?:\d+\. )?(.+)$", re.MULTILINE)
_SUBSECTION = re.compile(r"^### (.+)$", re.MULTILINE)
_OP = re.compile(r"`([a-z_]+)`")
_EVENT = re.compile(r"`([a-z_.]+)` on topic `([^`]+)`")
_ERROR_ROW = re.compile(r"^\| `([a-z_]+)` \| (yes|no) \|", re.MULTILINE)
_JSON = re.compile(r"^```json\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_HEX = re.compile(r"^```\n((?:[0-9a-f]{2}[ \n])+)= (\{.*?\})\n```$", re.MULTILINE | re.DOTALL)
_BIN = re.compile(r"<bin: (.*)>", re.DOTALL)


def section(title: str) -> str:
    parts = _SECTION.split(DOC)
    bodies = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert title in bodies, f"docs/protocol.md has no section '## N. {title}'"
    return bodies[title]


def subsections(body: str) -> list[tuple[str, str]]:
    parts = _SUBSECTION.split(body)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def documented_ops() -> dict[str, str]:
    found = {}
    for heading, body in subsections(section("Ops")):
        match = _OP.fullmatch(heading)
        assert match, f"an op heading is '### `op`', not {heading!r}"
        found[match.group(1)] = body
    return found


def documented_events() -> dict[str, tuple[str, str]]:
    found = {}
    for heading, body in subsections(section("Events")):
        match = _EVENT.fullmatch(heading)
        if match:
            found[match.group(1)] = (match.group(2), body)
    return found


def with_bytes(value: Any) -> Any:
    """An example as the MessagePack it stands for: ``"<bin: TEXT>"`` is the bytes of TEXT."""
    if isinstance(value, str):
        match = _BIN.fullmatch(value)
        return match.group(1).encode() if match else value
    if isinstance(value, dict):
        return {key: with_bytes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_bytes(item) for item in value]
    return value


def examples(body: str) -> list[Any]:
    return [with_bytes(json.loads(block)) for block in _JSON.findall(body)]


def error_codes() -> dict[str, bool]:
    """Every code of runtime/errors.py and whether its family is retryable by default."""
    codes: dict[str, bool] = {}
    pending: list[type[WorkspaceError]] = [WorkspaceError]
    while pending:
        cls = pending.pop()
        codes.setdefault(cls.code, cls.default_retryable)
        pending.extend(cls.__subclasses__())
    return codes


def test_the_documented_ops_are_those_the_server_decodes_and_dispatches_in_order() -> None:
    assert list(documented_ops()) == list(OPS)
    assert set(ROUTES) == set(OPS)


def test_the_documented_error_codes_are_those_of_the_code_with_their_retryability() -> None:
    documented = {code: flag == "yes" for code, flag in _ERROR_ROW.findall(section("Error codes"))}
    assert documented == error_codes()


def test_the_documented_event_types_are_the_event_tags_on_their_topics() -> None:
    tags = {str(kind.__struct_config__.tag) for kind in (*typing.get_args(AnyEvent), ProcessOutput, ProcessExited)}
    documented = documented_events()
    assert set(documented) == tags
    for tag, (topic, _) in documented.items():
        pattern = EVENTS[tag][0].replace("{", "<").replace("}", ">")
        assert topic == pattern, f"{tag} is published on {pattern}, not {topic}"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return protocol_schema()


def valid(schema: dict[str, Any], part: dict[str, Any], value: Any) -> None:
    Draft202012Validator({**part, "$defs": schema["$defs"]}).validate(msgspec.to_builtins(value))


def as_sent(value: Any, kind: Any) -> Any:
    """``value`` decoded as ``kind`` by the vocabulary's decoder, then back to plain data (bytes kept)."""
    return msgspec.to_builtins(decode_as(encode(value), kind), builtin_types=(bytes,))


@pytest.mark.parametrize("op", list(OPS))
def test_each_op_has_examples_that_the_server_decodes_and_the_schema_accepts(op: str, schema: dict[str, Any]) -> None:
    found = examples(documented_ops()[op])
    requests = [example for example in found if "op" in example]
    replies = [example for example in found if "ok" in example]
    assert requests and any(reply["ok"] for reply in replies), f"{op}: an example request and reply, please"
    for example in requests:
        request = decode_request(encode(example))
        assert request.op == op
        decode_args(op, request.args)  # unknown fields and broken rules raise
        valid(schema, {"$ref": "#/$defs/Request"}, example)
    ids = {example["id"] for example in requests}
    for example in replies:
        reply = decode_reply(encode(example))
        if reply.ok:
            assert reply.id in ids, f"{op}: the reply {reply.id} answers no example request"
            answer = RESULTS[op]
            kinds = answer if isinstance(answer, tuple) else (answer,)
            assert any(_same(example["result"], kind) for kind in kinds), f"{op}: {example['result']}"
            valid(schema, schema["x-ops"][op]["result"], example["result"])
        else:
            assert reply.error is not None and reply.error.code in error_codes()
            valid(schema, {"$ref": "#/$defs/ErrorReply"}, example)


def _same(result: Any, kind: Any) -> bool:
    """The result decodes as ``kind`` with every field shown (an example leaves nothing out)."""
    try:
        return bool(as_sent(result, kind) == result)
    except msgspec.ValidationError:
        return False


@pytest.mark.parametrize("tag", sorted(EVENTS))
def test_each_event_type_has_an_example_that_decodes_whole(tag: str, schema: dict[str, Any]) -> None:
    _, body = documented_events()[tag]
    [example] = examples(body)
    assert example["type"] == tag
    assert as_sent(example, EVENTS[tag][1]) == example, f"{tag}: the example leaves out or adds fields"
    valid(schema, schema["x-events"][tag]["schema"], example)


def test_the_byte_dumps_are_the_messagepack_of_what_they_show() -> None:
    dumps = _HEX.findall(DOC)
    assert len(dumps) >= 2
    for hex_text, shown in dumps:
        assert msgspec.msgpack.decode(bytes.fromhex(hex_text)) == json.loads(shown)
