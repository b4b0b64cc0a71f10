"""Wire protocol v1 as a JSON Schema, generated from the vocabulary's own structs.

``protocol_schema()`` describes, in JSON Schema 2020-12, every message a client sends or
receives: the request envelope (its ``args`` checked against the op's struct), both
reply envelopes, each op's arguments and result, and every event. The schema is of the
messages' JSON view (msgspec's): a field that is MessagePack ``bin`` on the wire is a
base64 string there, marked ``contentEncoding: base64`` and ``x-msgpack: bin``. Beside
``$defs``: ``x-ops`` (op -> its ``args`` and ``result``), ``x-events`` (event type -> its
topic and schema) and ``x-errors`` (code -> whether it is retryable by default).

``RESULTS`` is the one table of what each op answers: what its handler returns, and
what ``runtime.wire.Client`` decodes it as. The committed copy of the schema is
regenerated with::

    python -m runtime.messages.schema > docs/protocol.schema.json
"""

from __future__ import annotations

import inspect
import json
import sys
import typing
from typing import Any, Final, TypedDict

import msgspec

from runtime.errors import FAMILIES
from runtime.messages.args import OPS
from runtime.messages.envelope import WELCOME, ErrorReply, OkReply, Request
from runtime.messages.events import AnyEvent, GithubCredentialUsed
from runtime.messages.processes import OutputPage, ProcessExited, ProcessInfo, ProcessOutput, process_topic
from runtime.messages.records import (
    CloneResult,
    ExecResult,
    FileData,
    GithubApp,
    McpServerStatus,
    ProviderStatus,
    Snapshot,
    WorkspaceRecord,
)

__all__ = [
    "EVENTS",
    "RESULTS",
    "Empty",
    "JsonRpcResponse",
    "PingResult",
    "RotateResult",
    "StatsResult",
    "main",
    "protocol_schema",
    "render",
]

_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_REF: Final = "#/$defs/{name}"


class PingResult(TypedDict):
    """The result of ``ping``: ``ready`` is false until start-up reconciliation is done."""

    version: str
    ready: bool


class Empty(TypedDict):
    """An empty map: the op was done and has nothing to report."""


class RotateResult(TypedDict):
    """The result of ``github_key_rotate``: how many Apps' keys were re-encrypted."""

    rotated: int


class StatsResult(TypedDict):
    """The result of ``stats``, read from the runtime's boards (see docs/monitoring.md).

    ``workspaces`` counts active requested workspaces; ``by_state`` every requested
    workspace by state; ``capacity`` is ``{"active", "limit"}``; ``pool`` the warm pools'
    sizes and counters; ``reaper`` its last sweep; ``host`` the latest host sample
    (``cpu_pct`` is null before the second sample); ``sampler`` its interval and timing;
    ``alerts`` the active alerts (the fields of ``alert.raised``); ``usage`` each measured
    workspace's ``cpu_pct``, ``memory_bytes``, ``memory_pct`` and ``disk_used_bytes``.
    """

    workspaces: int
    by_state: dict[str, int]
    capacity: dict[str, int]
    pool: dict[str, int]
    reaper: dict[str, Any]
    host: dict[str, Any]
    sampler: dict[str, Any]
    alerts: list[dict[str, Any]]
    usage: dict[str, dict[str, Any]]


class JsonRpcResponse(TypedDict, total=False):
    """The result of ``mcp_call``: the MCP server's JSON-RPC response, with the caller's ``id``.

    A notification (no ``id``) is answered with an empty map.
    """

    jsonrpc: str
    id: str | int | None
    result: Any
    error: dict[str, Any]


RESULTS: Final[dict[str, Any]] = {
    "ping": PingResult,
    "providers": list[ProviderStatus],
    "create": WorkspaceRecord,
    "get": WorkspaceRecord,
    "list": list[WorkspaceRecord],
    "exec": (ExecResult, ProcessInfo),  # with ``stream: true``: the started process
    "exec_stdin": Empty,
    "exec_kill": Empty,
    "exec_list": list[ProcessInfo],
    "exec_output": OutputPage,
    "write_file": Empty,
    "read_file": FileData,
    "destroy": Empty,
    "extend": WorkspaceRecord,
    "stats": StatsResult,
    "snapshot": Snapshot,
    "github_app_set": GithubApp,
    "github_app_list": list[GithubApp],
    "github_app_delete": Empty,
    "github_key_rotate": RotateResult,
    "github_audit": list[GithubCredentialUsed],
    "git_clone": CloneResult,
    "mcp_list": list[McpServerStatus],
    "mcp_call": JsonRpcResponse,
}
"""What each op of ``OPS`` answers in ``result`` (a tuple: one of those)."""

EVENTS: Final[dict[str, tuple[str, type[msgspec.Struct]]]] = {
    **{str(kind.__struct_config__.tag): (kind.topic, kind) for kind in typing.get_args(AnyEvent)},
    **{
        str(kind.__struct_config__.tag): (process_topic("{workspace_id}", "{process_id}"), kind)
        for kind in (ProcessOutput, ProcessExited)
    },
}
"""Every event type: its topic (a pattern for a process's events) and its struct."""


def _kinds(answer: Any) -> tuple[Any, ...]:
    return answer if isinstance(answer, tuple) else (answer,)


def _json_view(struct: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """``struct`` with its raw MessagePack fields (``msgspec.Raw``) as the maps they carry."""
    hints = typing.get_type_hints(struct, include_extras=True)  # with the bounds of ``Request``'s fields
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(struct):
        raw = hints[field.name] is msgspec.Raw
        kind = dict[str, Any] if raw else hints[field.name]
        if field.required:
            fields.append((field.name, kind))
        else:
            default = msgspec.msgpack.decode(field.default) if raw else field.default
            fields.append((field.name, kind, default))
    return msgspec.defstruct(struct.__name__, fields, namespace={"__doc__": struct.__doc__}, frozen=True)


def _errors() -> dict[str, dict[str, Any]]:
    """Every wire error code: whether it is retryable unless the reply says otherwise, and its meaning."""
    return {
        code: {"retryable": family.default_retryable, "description": inspect.cleandoc(family.__doc__ or "")}
        for code, family in sorted(FAMILIES.items())
    }


def _polish(value: Any) -> Any:
    """Docstrings dedented (as every Python version shows them) and ``bin`` fields marked."""
    if isinstance(value, dict):
        polished = {key: _polish(item) for key, item in value.items()}
        if isinstance(polished.get("description"), str):
            polished["description"] = inspect.cleandoc(polished["description"])
        if polished.get("contentEncoding") == "base64":
            polished["x-msgpack"] = "bin"
        return polished
    if isinstance(value, list):
        return [_polish(item) for item in value]
    return value


def protocol_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of wire protocol v1, from the structs the runtime decodes and answers with.

    Returns:
        A dict with ``$defs`` (every envelope, args struct, result and event), ``x-ops``,
        ``x-events``, ``x-errors`` and ``x-welcome`` (the event socket's greeting).
    """
    request = _json_view(Request)
    args = list(dict.fromkeys(OPS.values()))
    results = list(dict.fromkeys(kind for answer in RESULTS.values() for kind in _kinds(answer)))
    events = [kind for _, kind in EVENTS.values()]
    kinds: list[Any] = [request, OkReply, ErrorReply, *args, *results, *events]
    refs, defs = msgspec.json.schema_components(kinds, ref_template=_REF)
    schema_of = dict(zip(kinds, refs, strict=True))

    envelope = defs["Request"]
    envelope["properties"]["op"] = {"enum": list(OPS), "description": "The op: one of x-ops."}
    envelope["properties"]["args"]["description"] = "The op's arguments: x-ops[op].args."
    envelope["allOf"] = [
        {
            "if": {"properties": {"op": {"const": op}}, "required": ["op"]},
            "then": {"properties": {"args": schema_of[struct]}},
        }
        for op, struct in OPS.items()
    ]
    defs["OkReply"]["properties"]["result"]["description"] = "The op's result: x-ops[op].result."
    for name, ok in (("OkReply", True), ("ErrorReply", False)):  # the server always sends ``ok``
        defs[name]["properties"]["ok"] = {"const": ok}
        defs[name]["required"].append("ok")
    defs["Reply"] = {
        "title": "Reply",
        "description": "Either reply, told apart by ``ok``.",
        "oneOf": [{"$ref": _REF.format(name="OkReply")}, {"$ref": _REF.format(name="ErrorReply")}],
    }
    for _, kind in EVENTS.values():  # the state log stamps every event before it is published
        event = defs[kind.__name__]
        for name in ("seq", "ts"):
            event["properties"][name].pop("default", None)
            if name not in event["required"]:
                event["required"].append(name)

    ops = {
        op: {
            "args": schema_of[OPS[op]],
            "result": (
                {"anyOf": [schema_of[kind] for kind in _kinds(answer)]}
                if isinstance(answer, tuple)
                else schema_of[answer]
            ),
        }
        for op, answer in ((op, RESULTS[op]) for op in OPS)
    }
    schema: dict[str, Any] = _polish(
        {
            "$schema": _DIALECT,
            "title": "Agent workspaces wire protocol v1",
            "description": (
                "The messages of the ZeroMQ + MessagePack protocol (docs/protocol.md), as their JSON view: "
                "fields marked x-msgpack: bin are MessagePack bin on the wire (base64 strings in JSON). "
                "Generated by: python -m runtime.messages.schema"
            ),
            "$defs": dict(sorted(defs.items())),
            "x-ops": ops,
            "x-events": {
                tag: {"topic": topic, "schema": schema_of[kind]} for tag, (topic, kind) in sorted(EVENTS.items())
            },
            "x-errors": _errors(),
            "x-welcome": WELCOME.decode("ascii"),
        }
    )
    return schema


def render() -> str:
    """The schema as the committed file holds it: JSON, indent 2, sorted keys, a final newline."""
    return json.dumps(protocol_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write the schema to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
