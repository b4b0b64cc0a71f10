"""The HTTP API and admin page as one ASGI application: ``runtime.http.app(runtime)``.

Routes: ``/healthz`` (live) and ``/readyz`` (ready after start-up reconciliation), with no
token; the ops as REST under ``/api/v1/agent/workspaces`` and ``/api/v1/agent/github``
(``endpoints.ENDPOINTS``); server-sent events (``streams``); the MCP servers over MCP's
streamable HTTP at ``/api/v1/agent/workspaces/mcp/{name}`` (``mcp``); the OpenAPI document at
``/api/v1/openapi.json`` and its reading at ``/api/v1/docs``; the admin page at ``/``.
Every op goes through the Gateway (``bridge``) with the caller's bearer token, so the
token check, the rules, ``Idempotency-Key`` retries and the metrics are those of ZeroMQ;
errors map to statuses as ``responses`` says.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from runtime.errors import WorkspaceError
from runtime.http.bridge import GatewayBridge
from runtime.http.endpoints import API, ENDPOINTS, Endpoint, Incoming
from runtime.http.mcp import MCP_PATH, McpRoutes
from runtime.http.openapi import document
from runtime.http.responses import (
    MAX_BODY,
    Asked,
    Receive,
    Response,
    Scope,
    Send,
    error,
    json,
    malformed,
    read_body,
    refused,
)
from runtime.http.streams import EventSource, StreamRoutes
from runtime.messages import OPS, ErrorBody, FileData, decode_as, decode_json, invalid_values
from runtime.version import __version__

__all__ = ["HttpApp", "Served", "app"]

_STATIC = Path(__file__).parent / "static"
_FILES = {
    "/": ("index.html", "text/html"),
    "/api/v1/docs": ("docs.html", "text/html"),
    "/static/admin.js": ("admin.js", "text/javascript"),
    "/static/admin.css": ("admin.css", "text/css"),
}
_PROCESS_EVENTS = re.compile(rf"{API}/([^/]+)/exec/([^/]+)/events")
_EXEC_DEFAULT_S = 570.0
"""How long an ``exec`` without ``timeout_s`` is waited for (the agent's own limit is lower)."""
_REPLY_GRACE_S = 30.0
_REPLY_WAIT_S = 600.0
_READY_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class Served(EventSource, Protocol):
    """What the HTTP side needs of a runtime (``runtime.app.Runtime`` is one)."""

    token: str
    inproc_endpoint: str

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called when the runtime stops, before its ZeroMQ context closes."""
        ...


class HttpApp:
    """The ASGI application of one runtime.

    Args:
        served: The runtime (its token, inproc endpoints, ZeroMQ context, state log's events).
    """

    def __init__(self, served: Served) -> None:
        self._served = served
        self._bridge = GatewayBridge(served.zmq_context, served.inproc_endpoint)
        self._streams = StreamRoutes(served, self._bridge)
        self._mcp = McpRoutes(served, self._bridge, self._streams)
        self._routes = [(endpoint.method, _pattern(endpoint.path), endpoint) for endpoint in ENDPOINTS]
        self._openapi = msgspec.json.encode(document())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        served.on_stop(self._runtime_stopping)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (``http`` and ``lifespan``)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        asked = Asked.of(scope)
        if self._stopped and asked.path != "/healthz":
            stopped = (
                json(503, {"ready": False})
                if asked.path == "/readyz"
                else error("provider_unavailable", "the runtime has stopped", retryable=False)
            )
            await stopped.send(send)
            return
        if asked.method == "GET" and asked.path == f"{API}/events":
            await self._streams.events(send, asked)
            return
        process = _PROCESS_EVENTS.fullmatch(asked.path)
        if asked.method == "GET" and process is not None:
            await self._streams.process_events(send, asked, process.group(1), process.group(2))
            return
        mcp = MCP_PATH.fullmatch(asked.path)
        if mcp is not None:  # before the table: `{workspace_id}/files` would take a server called "files"
            await self._mcp.serve(asked, receive, send, mcp.group(1))
            return
        response = await self._respond(asked, receive)
        await response.send(send)

    async def _respond(self, asked: Asked, receive: Receive) -> Response:
        method, path = asked.method, asked.path
        if method == "GET" and path == "/healthz":
            return json(200, {"live": True, "version": __version__})
        if method == "GET" and path == "/readyz":
            ready = await self._ready()
            return json(200 if ready else 503, {"ready": ready})
        if method == "GET" and path == "/api/v1/openapi.json":
            return Response(200, self._openapi)
        if method == "GET" and path in _FILES:
            name, kind = _FILES[path]
            return Response(200, (_STATIC / name).read_bytes(), f"{kind}; charset=utf-8")
        allowed = []
        for route_method, pattern, endpoint in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            body = await read_body(receive)
            if body is None:
                return malformed(f"the body is larger than {MAX_BODY >> 20} MiB", 413)
            return await self._call(endpoint, match.groupdict(), asked, body)
        if allowed:
            refusal = malformed(f"{method} is not allowed on {path}", 405)
            refusal.headers.append(("allow", ", ".join(dict.fromkeys(allowed))))
            return refusal
        return json(404, {"error": ErrorBody("not_found", f"no such path: {path}", False)})

    async def _call(self, endpoint: Endpoint, params: dict[str, str], asked: Asked, body: bytes) -> Response:
        """The op of ``endpoint`` through the Gateway, its arguments held to the op's rules first."""
        loaded: Any = {}
        if endpoint.body == "json" and body.strip():
            try:
                loaded = decode_json(body)
            except msgspec.DecodeError as exc:
                return malformed(f"the body is not JSON: {exc}")
            if not isinstance(loaded, dict):
                return malformed("the body is not a JSON object")
        values = endpoint.args(Incoming(params, asked.query, body, loaded))
        try:
            args = msgspec.convert(values, OPS[endpoint.op])
        except msgspec.ValidationError as exc:
            return error("bad_request", invalid_values(endpoint.op, values, exc))
        timeout_s = getattr(args, "timeout_s", None)
        wait = (timeout_s or _EXEC_DEFAULT_S) + _REPLY_GRACE_S if endpoint.op == "exec" else _REPLY_WAIT_S
        try:
            reply = await self._bridge.request(endpoint.op, args, asked.token, request_id=asked.key, timeout_s=wait)
        except WorkspaceError as exc:
            return error(exc.code, exc.message, exc.retryable)
        if not reply.ok:
            return refused(reply.error)
        if endpoint.result == "raw":
            return Response(endpoint.status, decode_as(reply.result, FileData).data, "application/octet-stream")
        return Response(endpoint.status, msgspec.json.encode(msgspec.msgpack.decode(reply.result)))

    async def _ready(self) -> bool:
        try:
            reply = await self._bridge.request("ping", None, self._served.token, timeout_s=_READY_TIMEOUT_S)
        except WorkspaceError:
            return False
        return reply.ok and bool(msgspec.msgpack.decode(reply.result).get("ready"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _runtime_stopping(self) -> None:
        """Close this app's sockets on its event loop before the runtime's ZeroMQ context closes.

        (A context cannot close while a socket of it is open: an ASGI server still running
        when the runtime stops would otherwise hold ``Runtime.stop`` forever.)
        """
        self._stopped = True
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        closing = asyncio.run_coroutine_threadsafe(self._close_sockets(), loop)
        try:
            closing.result(_CLOSE_TIMEOUT_S)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
            log.warning("the HTTP app's event loop did not close its sockets within %.0f s", _CLOSE_TIMEOUT_S)

    async def _close_sockets(self) -> None:
        await self._streams.ended(_CLOSE_TIMEOUT_S)
        self._bridge.close()

    def end_streams(self) -> None:
        """End every open event stream (call on the serving event loop, before it stops)."""
        self._streams.end()

    def close(self) -> None:
        """Release the Gateway connection (call on the event loop that served; lifespan shutdown does)."""
        self._streams.end()
        self._bridge.close()


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", path))


def app(served: Served) -> HttpApp:
    """The ASGI application serving ``served`` (mount it in a host's ASGI server)."""
    return HttpApp(served)
