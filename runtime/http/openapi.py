"""The OpenAPI 3.1 document of the HTTP API, generated from the endpoints and the vocabulary.

Request bodies and results are the very structs the Gateway decodes and the actors
answer with (``msgspec.json.schema_components``), so the document cannot drift from what
the runtime accepts: a rule added to a struct shows up here.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from runtime.http.endpoints import ENDPOINTS, Endpoint
from runtime.http.sse import LOG_TOPICS
from runtime.messages import (
    OPS,
    AnyEvent,
    CloneResult,
    ErrorBody,
    ExecResult,
    GithubApp,
    GithubCredentialUsed,
    McpServerStatus,
    OutputPage,
    ProcessExited,
    ProcessInfo,
    ProcessOutput,
    ProviderStatus,
    Snapshot,
    WorkspaceRecord,
)
from runtime.version import __version__

__all__ = ["RESULTS", "document"]

RESULTS: dict[str, Any] = {
    "providers": list[ProviderStatus],
    "stats": dict[str, Any],
    "snapshot": Snapshot,
    "list": list[WorkspaceRecord],
    "create": WorkspaceRecord,
    "get": WorkspaceRecord,
    "destroy": dict[str, Any],
    "exec": (ExecResult, ProcessInfo),  # stream=true answers the started process
    "exec_list": list[ProcessInfo],
    "exec_stdin": dict[str, Any],
    "exec_kill": dict[str, Any],
    "exec_output": OutputPage,
    "read_file": bytes,
    "write_file": dict[str, Any],
    "extend": WorkspaceRecord,
    "git_clone": CloneResult,
    "github_app_list": list[GithubApp],
    "github_app_set": GithubApp,
    "github_app_delete": dict[str, Any],
    "github_key_rotate": dict[str, int],
    "github_audit": list[GithubCredentialUsed],
    "mcp_list": list[McpServerStatus],
}
"""What each op answers (a tuple: one of those)."""

_REF = "#/components/schemas/{name}"
_QUERY: dict[str, tuple[dict[str, Any], str]] = {
    "label": ({"type": "string", "pattern": "^[^=]+=.*$"}, "key=value; repeat it: every label must match"),
    "state": ({"type": "string"}, "only workspaces in this state"),
    "path": ({"type": "string"}, "a path under /workspace (relative, or absolute within it)"),
    "mode": ({"type": "string", "pattern": "^[0-7]{1,4}$"}, "the file's permission bits, in octal"),
    "close": ({"type": "boolean"}, "close stdin after writing the body"),
    "after": ({"type": "integer", "minimum": 0}, "only what came after this seq"),
    "limit": ({"type": "integer", "minimum": 1}, "at most this many"),
}
"""The query parameters the endpoints read: schema and meaning."""


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]


_STATUSES = {
    "400": "bad_request: the body is not a JSON object",
    "401": "unauthorized: no or a wrong bearer token",
    "404": "not_found",
    "409": "conflict: the workspace's state does not allow it",
    "422": "bad_request: a value was refused (a rule, a path outside /workspace)",
    "429": "capacity (Retry-After)",
    "503": "provider_unavailable or disabled (Retry-After when retryable)",
    "504": "timeout",
}


def _operation(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    parameters = _path_parameters(endpoint.path)
    for name in endpoint.query:
        schema, meaning = _QUERY[name]
        parameters.append({"name": name, "in": "query", "required": name == "path", "schema": schema,
                           "description": meaning, **({"explode": True} if name == "label" else {})})  # fmt: skip
    operation: dict[str, Any] = {
        "operationId": endpoint.op,
        "summary": endpoint.summary,
        "parameters": parameters,
        "responses": {str(endpoint.status): _result(endpoint, schemas)},
    }
    for status, meaning in _STATUSES.items():
        operation["responses"][status] = {
            "description": meaning,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    if endpoint.body == "json":
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.body(endpoint)}},
        }
    elif endpoint.body == "raw":
        operation["requestBody"] = {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    return operation


def _result(endpoint: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    if endpoint.result == "raw":
        return {
            "description": "the file's bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    answered = RESULTS[endpoint.op]
    schema = {"oneOf": [schemas.of(kind) for kind in answered]} if isinstance(answered, tuple) else schemas.of(answered)
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


class _Schemas:
    """The vocabulary's structs as OpenAPI components, and the schema of each."""

    def __init__(self, kinds: list[Any]) -> None:
        refs, self.components = msgspec.json.schema_components(kinds, ref_template=_REF)
        self._refs = dict(zip(kinds, refs, strict=True))

    def of(self, kind: Any) -> dict[str, Any]:
        """The schema of ``kind`` (a ``$ref`` for a struct)."""
        return dict(self._refs[kind])

    def body(self, endpoint: Endpoint) -> dict[str, Any]:
        """The JSON body of ``endpoint``: its op's arguments but those the path carries."""
        kind = OPS[endpoint.op]
        in_path = set(re.findall(r"{(\w+)}", endpoint.path))
        if not in_path:
            return self.of(kind)
        name = f"{kind.__name__}Body"
        if name not in self.components:
            whole = self.components[kind.__name__]
            body = {**whole, "title": name, "properties": dict(whole["properties"])}
            for field in in_path:
                body["properties"].pop(field, None)
            body["required"] = [field for field in whole.get("required", []) if field not in in_path]
            self.components[name] = body
        return {"$ref": _REF.format(name=name)}


def _streams(schemas: _Schemas) -> dict[str, Any]:
    resume = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
        "description": "resume after this seq: what was missed is sent first (a snapshot's seq works too)",
    }
    topics = {
        "name": "topics",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": f"comma-separated, among {', '.join(LOG_TOPICS)} (default: all)",
    }

    def stream(of: Any, meaning: str) -> dict[str, Any]:
        return {"200": {"description": meaning, "content": {"text/event-stream": {"schema": of}}}}

    process_events = {"oneOf": [schemas.of(ProcessOutput), schemas.of(ProcessExited)]}
    return {
        "/api/v1/agent/workspaces/events": {
            "get": {
                "operationId": "events",
                "summary": "The event stream as server-sent events: id is the event's seq, event its type",
                "parameters": [topics, resume],
                "responses": stream(schemas.of(AnyEvent), "text/event-stream, one event per message"),
            }
        },
        "/api/v1/agent/workspaces/{workspace_id}/exec/{process_id}/events": {
            "get": {
                "operationId": "process_events",
                "summary": "A streamed process's output, then its exit, as server-sent events (the stream ends there)",
                "parameters": [*_path_parameters("{workspace_id}/{process_id}"), resume],
                "responses": stream(
                    process_events, "text/event-stream; exec.truncated says how many output events were not kept"
                ),
            }
        },
    }


def _mcp() -> dict[str, Any]:
    """MCP's streamable HTTP transport (``mcp``): JSON-RPC in and out, not the API's own shapes."""
    message = {
        "type": "object",
        "description": "one JSON-RPC 2.0 message: a request (method, id), a notification (method) or a response",
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer"]},
            "method": {"type": "string", "minLength": 1},
            "params": {"type": "object"},
            "result": {"type": "object"},
            "error": {"type": "object"},
        },
        "required": ["jsonrpc"],
    }
    rpc_error = {
        "type": "object",
        "description": "a JSON-RPC error response (id null when the request's could not be read)",
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "error": {
                "type": "object",
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
                "required": ["code", "message"],
            },
        },
        "required": ["jsonrpc", "id", "error"],
    }
    api_error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    session = {
        "name": "Mcp-Session-Id",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "the id answered to initialize; optional, and any is accepted (sessions carry no state)",
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    refusals = {
        "401": {"description": "unauthorized: no or a wrong bearer token", "content": api_error},
        "404": {"description": "not_found: no MCP server has that name", "content": api_error},
    }
    answered = {
        "description": "the server's JSON-RPC response (with the caller's id); when the runtime could not get "
        'one (the server is starting or failed, a timeout), a JSON-RPC error whose data is {"code", "retryable"}',
        "headers": {
            "Mcp-Session-Id": {"description": "answering initialize: a new session id", "schema": {"type": "string"}}
        },
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    return {
        "/api/v1/agent/workspaces/mcp/{name}": {
            "post": {
                "operationId": "mcp_message",
                "summary": "MCP streamable HTTP: send one JSON-RPC message to the MCP server (mcp_call)",
                "parameters": [name, session],
                "requestBody": {"required": True, "content": {"application/json": {"schema": message}}},
                "responses": {
                    "200": answered,
                    "202": {"description": "a notification (forwarded) or a response (nothing waits for it)"},
                    "400": {
                        "description": "not one JSON-RPC message (-32700: not JSON; -32600: not JSON-RPC, or a batch)",
                        "content": {"application/json": {"schema": rpc_error}},
                    },
                    **refusals,
                    "503": {"description": "a notification the server could not take yet", "content": api_error},
                },
            },
            "get": {
                "operationId": "mcp_notifications",
                "summary": "MCP streamable HTTP: the MCP server's notifications as server-sent events "
                "(id: the event's seq; data: the JSON-RPC notification)",
                "parameters": [
                    name,
                    session,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                        "description": "resume after this seq: the notifications missed are sent first",
                    },
                ],
                "responses": {
                    "200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": message}}},
                    **refusals,
                    "406": {"description": "Accept does not allow text/event-stream", "content": api_error},
                },
            },
        }
    }


def _every_kind() -> list[Any]:
    kinds: list[Any] = sorted({OPS[endpoint.op] for endpoint in ENDPOINTS if endpoint.body == "json"}, key=str)
    for endpoint in ENDPOINTS:
        answered = RESULTS[endpoint.op]
        kinds += list(answered) if isinstance(answered, tuple) else [answered]
    return [*dict.fromkeys([*kinds, AnyEvent, ProcessOutput, ProcessExited])]


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    schemas = _Schemas(_every_kind())
    components = schemas.components
    components["Error"] = {
        "type": "object",
        "properties": {"error": msgspec.json.schema(ErrorBody)["$defs"]["ErrorBody"]},
        "required": ["error"],
    }
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    paths.update(_streams(schemas))
    paths.update(_mcp())
    for path, meaning in (("/healthz", "live"), ("/readyz", "ready: start-up reconciliation is done")):
        responses = {"200": {"description": meaning}}
        if path == "/readyz":
            responses["503"] = {"description": "not ready yet (or stopping)"}
        paths[path] = {"get": {"operationId": path.strip("/"), "summary": meaning, "security": [],
                               "responses": responses}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent workspaces", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
