"""MCP's streamable HTTP transport in front of the runtime's MCP servers: ``…/workspaces/mcp/{name}``.

An MCP client that speaks streamable HTTP (revisions 2025-06-18 and 2025-11-25) points at
``/api/v1/agent/workspaces/mcp/{name}`` with the runtime's bearer token and reaches the
server ``name`` through the Gateway, exactly as ``mcp_call`` over ZeroMQ does: ``POST``
carries one JSON-RPC message (a request is answered with the server's response as
``application/json``; a notification, or a response of the client's, with ``202``);
``GET`` streams the server's notifications as server-sent events (``id`` is the event's
``seq``, so ``Last-Event-ID`` replays what a reconnecting client missed from the state
log).

Sessions: the runtime owns the one MCP session with each server (it did the
``initialize`` handshake, and answers a caller's ``initialize`` from its result), so the
``Mcp-Session-Id`` handed out with a caller's ``initialize`` carries no state, and any
session id, or none, is accepted. An MCP client told ``404`` for its session id must
start over with a new ``initialize``, and the SDKs' clients do not do that on their own
(they fail the call with "Session terminated"): a table of session ids kept in memory
would be lost when the runtime restarts and break every connected client for nothing,
since there was nothing in the session to lose. For the same reason ``DELETE`` answers
``405`` ("the server does not allow clients to terminate sessions"): a ``200`` would
promise a ``404`` for that session id from then on.

Errors: no or a wrong token answers ``401``, an unknown server ``404`` (the API's JSON
error body); a body that is not one JSON-RPC message ``400`` with a JSON-RPC error (a
batch too: the 2025-06-18 revision removed batching). Any other error of ``mcp_call``
(the server is still starting or failed, a timeout) answers the request with a JSON-RPC
error response (``200``) whose ``error.data`` is ``{"code": <wire code>, "retryable"}``,
so an MCP client surfaces it as that call's error.

Every HTTP caller is the same client to the Gateway, so a request's id (and the id a
``notifications/cancelled`` names) is scoped to its ``Mcp-Session-Id`` on the way in.

The ``Origin`` header is not checked (the spec asks servers to, against DNS rebinding):
every request needs the bearer token, which a rebinding page does not have.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import msgspec

from runtime.errors import WorkspaceError
from runtime.http.bridge import GatewayBridge
from runtime.http.endpoints import API
from runtime.http.responses import MAX_BODY, Asked, Receive, Response, Send, error, json, malformed, read_body, refused
from runtime.http.sse import Render, subscribe, workspace_stream
from runtime.http.streams import EventSource, StreamRoutes
from runtime.mcp.link import CALL_TIMEOUT_S
from runtime.messages import ErrorBody, McpCallArgs, McpNotification, broken_rule, decode_json

__all__ = ["INVALID_REQUEST", "MCP_PATH", "PARSE_ERROR", "SERVER_ERROR", "SESSION_HEADER", "McpRoutes"]

MCP_PATH = re.compile(rf"{API}/mcp/([^/]+)")
"""The streamable HTTP endpoint of one MCP server (its name is the group)."""
SESSION_HEADER = "mcp-session-id"
"""The header carrying the session id handed out with ``initialize``."""
PARSE_ERROR = -32700
"""JSON-RPC's code for a body that is not JSON."""
INVALID_REQUEST = -32600
"""JSON-RPC's code for a message that is not one JSON-RPC 2.0 message (and for ``bad_request``)."""
SERVER_ERROR = -32000
"""JSON-RPC's code for an implementation-defined server error: the runtime's own errors."""
_TOPIC = McpNotification.topic
_ASK_TIMEOUT_S = 30.0
_CALL_WAIT_S = CALL_TIMEOUT_S + 30.0
"""Longer than the runtime's own deadline for an MCP call, which answers ``timeout`` itself."""
_ALLOWED = "GET, POST"
_EVENT_STREAM = frozenset({"text/event-stream", "text/*", "*/*"})


class McpRoutes:
    """The streamable HTTP endpoints of one runtime's MCP servers, served on one event loop.

    Args:
        source: Where the notification streams read events (the runtime).
        bridge: The way to the Gateway.
        streams: The event streams' bookkeeping (so stopping ends these streams too).
    """

    def __init__(self, source: EventSource, bridge: GatewayBridge, streams: StreamRoutes) -> None:
        self._source = source
        self._bridge = bridge
        self._streams = streams

    async def serve(self, asked: Asked, receive: Receive, send: Send, name: str) -> None:
        """Answer one request to ``/api/v1/agent/workspaces/mcp/{name}``."""
        if asked.method == "GET":
            await self._notifications(asked, send, name)
            return
        if asked.method != "POST":
            why = "POST sends a message, GET streams notifications; sessions are never terminated"
            refusal = malformed(f"{asked.method} is not allowed on {asked.path}: {why}", 405)
            refusal.headers.append(("allow", _ALLOWED))
            await refusal.send(send)
            return
        body = await read_body(receive)
        response = (
            malformed(f"the body is larger than {MAX_BODY >> 20} MiB", 413)
            if body is None
            else await self._post(asked, name, body)
        )
        await response.send(send)

    # ------------------------------------------------------------------ POST

    async def _post(self, asked: Asked, name: str, body: bytes) -> Response:
        try:
            message = decode_json(body)
        except msgspec.DecodeError as exc:
            return await self._guarded(asked, name, _rpc_error(400, None, PARSE_ERROR, f"the body is not JSON: {exc}"))
        if isinstance(message, list):
            why = "a batch is not accepted: send one JSON-RPC message per POST (MCP 2025-06-18 removed batching)"
            return await self._guarded(asked, name, _rpc_error(400, None, INVALID_REQUEST, why))
        kind, why = _kind(message)
        if kind == "invalid":
            ident = message.get("id") if isinstance(message, dict) and _valid_id(message.get("id")) else None
            return await self._guarded(asked, name, _rpc_error(400, ident, INVALID_REQUEST, why))
        if kind == "response":  # the runtime answers its servers' requests itself: no one waits for this
            return await self._guarded(asked, name, Response(202, b"", None))
        if broken_rule(McpCallArgs, {"name": name}) is not None:  # no server can have that name
            return await self._guarded(asked, name, _no_server(name))
        args = McpCallArgs(name=name, message=_scoped(message, asked.headers.get(SESSION_HEADER)))
        try:
            reply = await self._bridge.request(
                "mcp_call", args, asked.token, request_id=asked.key, timeout_s=_CALL_WAIT_S
            )
        except WorkspaceError as exc:
            failure: ErrorBody | None = ErrorBody(exc.code, exc.message, exc.retryable)
        else:
            failure = None if reply.ok else reply.error or ErrorBody("internal", "malformed error reply", False)
        if failure is not None:
            if kind == "notification" or failure.code in ("unauthorized", "not_found"):
                return refused(failure)
            return _call_error(message["id"], failure)
        if kind == "notification":
            return Response(202, b"", None)
        answer: dict[str, Any] = {**msgspec.msgpack.decode(reply.result), "id": message["id"]}
        headers = []
        if message["method"] == "initialize" and "result" in answer:
            headers.append((SESSION_HEADER, secrets.token_urlsafe(24)))
        return json(200, answer, headers)

    async def _guarded(self, asked: Asked, name: str, response: Response) -> Response:
        """``response``, unless the token is refused (401) or there is no server ``name`` (404)."""
        refusal = await self._refusal(asked, name)
        return response if refusal is None else refusal

    async def _refusal(self, asked: Asked, name: str) -> Response | None:
        """What to answer instead when the caller's token is refused or no server is called ``name``.

        ``mcp_list`` with the caller's token: the Gateway judges the token, the runtime knows the names.
        """
        try:
            reply = await self._bridge.request("mcp_list", None, asked.token, timeout_s=_ASK_TIMEOUT_S)
        except WorkspaceError as exc:
            return error(exc.code, exc.message, exc.retryable)
        if not reply.ok:
            return refused(reply.error)
        servers = msgspec.msgpack.decode(reply.result)
        if not any(server.get("name") == name for server in servers):
            return _no_server(name)
        return None

    # ------------------------------------------------------------------ GET

    async def _notifications(self, asked: Asked, send: Send, name: str) -> None:
        """The server's notifications as server-sent events, until the client or the runtime leaves."""
        refusal = await self._refusal(asked, name)
        if refusal is None and not _accepts_event_stream(asked.headers.get("accept")):
            refusal = malformed("GET streams the server's notifications: Accept must allow text/event-stream", 406)
        if refusal is not None:
            await refusal.send(send)
            return
        socket = await subscribe(self._source.zmq_context, self._source.inproc_events_endpoint, (_TOPIC,))
        render = _notifications_of(name)
        stream = workspace_stream(socket, (_TOPIC,), asked.last_event_id(), self._source.events_after, render)
        await self._streams.respond(send, stream)


def _kind(message: Any) -> tuple[str, str]:
    """``request``, ``notification``, ``response`` or ``invalid`` (with why) for one decoded message."""
    if not isinstance(message, dict):
        return "invalid", "the body is not a JSON-RPC message: expected a JSON object"
    if message.get("jsonrpc") != "2.0":
        return "invalid", 'the body is not a JSON-RPC 2.0 message: expected "jsonrpc": "2.0"'
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            return "invalid", "method must be a non-empty string"
        if "id" not in message:
            return "notification", ""
        if not _valid_id(message["id"]):
            return "invalid", f"id={message['id']!r} is not valid: expected a string or an integer"
        return "request", ""
    if "id" in message and ("result" in message) != ("error" in message):
        return "response", ""
    return "invalid", "the message is neither a request, a notification nor a response"


def _scoped(message: dict[str, Any], session: str | None) -> dict[str, Any]:
    """``message`` with the request id it carries or cancels made its session's own.

    Every HTTP caller is one client to the Gateway (the bridge's one identity), and the
    runtime matches a ``notifications/cancelled`` to the request it names by that identity
    and the caller's id. MCP clients all number their requests from 1: without a scope,
    one client's cancel could cancel another's request. (Without a session id, callers
    share one scope.) The answer gets the caller's own id back.
    """
    if session is None:
        return message
    if "id" in message:
        return {**message, "id": _in_session(session, message["id"])}
    params = message.get("params")
    if message["method"] == "notifications/cancelled" and isinstance(params, dict) and "requestId" in params:
        return {**message, "params": {**params, "requestId": _in_session(session, params["requestId"])}}
    return message


def _in_session(session: str, ident: Any) -> str:
    """An id scoped to ``session`` (JSON-encoded: the id ``1`` and the id ``"1"`` stay apart)."""
    return f"{session} {msgspec.json.encode(ident).decode()}"


def _valid_id(ident: Any) -> bool:
    return isinstance(ident, (str, int)) and not isinstance(ident, bool)


def _rpc_error(status: int, ident: Any, code: int, message: str, data: Any = None) -> Response:
    """A JSON-RPC error response (``id`` null when the request's could not be read)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return json(status, {"jsonrpc": "2.0", "id": ident, "error": body})


def _call_error(ident: Any, failure: ErrorBody) -> Response:
    """A request's answer when the runtime could not get the server's: that call's JSON-RPC error."""
    code = INVALID_REQUEST if failure.code == "bad_request" else SERVER_ERROR
    return _rpc_error(200, ident, code, failure.message, {"code": failure.code, "retryable": failure.retryable})


def _no_server(name: str) -> Response:
    return error("not_found", f"MCP server {name!r} does not exist")


def _accepts_event_stream(accept: str | None) -> bool:
    """Whether an ``Accept`` header allows ``text/event-stream`` (no header allows anything)."""
    if accept is None:
        return True
    return any(part.split(";")[0].strip().lower() in _EVENT_STREAM for part in accept.split(","))


def _notifications_of(name: str) -> Render:
    """Each notification of the server ``name`` as MCP streams it: the JSON-RPC message alone as ``data``."""

    def render(event: dict[str, Any]) -> bytes | None:
        if event.get("type") != "mcp.notification" or event.get("name") != name:
            return None
        # No `event:` line: MCP clients read only the default event type, "message".
        return b"id: %d\ndata: %s\n\n" % (int(event["seq"]), msgspec.json.encode(event["message"]))

    return render
