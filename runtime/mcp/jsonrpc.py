"""One MCP server shared by many callers: JSON-RPC ids rewritten, ``initialize`` done once.

An MCP server speaks JSON-RPC 2.0 to one peer. Here that peer is the runtime, and the
callers behind it are many, each numbering its requests from 1. So every request gets a
fresh id of the runtime's on its way in, and its response gets the caller's own id back
on its way out, to that caller only. The ``initialize`` handshake is the runtime's: it is
done once when the server starts, and a caller's ``initialize`` is answered from its
result (with the caller's id); the caller's ``notifications/initialized`` goes no
further. A caller's ``notifications/cancelled`` names the caller's id; it is rewritten
like a request. A request from the server to its client is answered here: ``ping`` with
an empty result, anything else (sampling, roots, elicitation: a relay has no one to ask)
with JSON-RPC's "method not found". This module does no I/O; ``Mux`` is thread-safe.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from runtime.errors import BadRequest
from runtime.messages import ReplyTo

__all__ = [
    "CLIENT_INFO",
    "PROTOCOL_VERSION",
    "Answer",
    "Forward",
    "Lines",
    "Mux",
    "Notify",
    "Reply",
    "encode_line",
]

PROTOCOL_VERSION: Final = "2025-11-25"
"""The MCP revision the runtime asks for in its ``initialize`` (the server may answer an older one)."""
CLIENT_INFO: Final = {"name": "agent-workspaces", "version": "1"}
_MAX_LINE = 64 << 20
_METHOD_NOT_FOUND = -32601


def encode_line(message: dict[str, Any]) -> bytes:
    """One message as MCP's stdio transport frames it: JSON, then a newline (JSON has none inside)."""
    return msgspec.json.encode(message) + b"\n"


@dataclass(frozen=True)
class Answer:
    """Answer the caller now with ``result`` (the server is not asked)."""

    result: dict[str, Any]


@dataclass(frozen=True)
class Forward:
    """Write ``line`` to the server (a request's response goes to its caller later)."""

    line: bytes


@dataclass(frozen=True)
class Reply:
    """Send ``response`` (the server's, with the caller's id) to ``reply_to``."""

    reply_to: ReplyTo
    response: dict[str, Any]


@dataclass(frozen=True)
class Notify:
    """The server sent a notification: publish it."""

    message: dict[str, Any]


@dataclass
class _Pending:
    reply_to: ReplyTo | None  # None: the runtime's own handshake
    caller_id: Any
    sent_at: float


class Mux:
    """The id rewriting and the cached handshake of one server process (a new one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._initialize_result: dict[str, Any] | None = None
        self._initialize_error: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the handshake

    def handshake(self) -> bytes:
        """The runtime's ``initialize`` request, to write first."""
        message = {
            "jsonrpc": "2.0",
            "id": self._register(None, None),
            "method": "initialize",
            "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
        return encode_line(message)

    @staticmethod
    def initialized() -> bytes:
        """The notification that ends the handshake, written once ``initialize`` was answered."""
        return encode_line({"jsonrpc": "2.0", "method": "notifications/initialized"})

    @property
    def initialize_result(self) -> dict[str, Any] | None:
        """The server's ``initialize`` result, once it came."""
        return self._initialize_result

    @property
    def initialize_error(self) -> dict[str, Any] | None:
        """The server's error answer to ``initialize``, if that is what came."""
        return self._initialize_error

    # ------------------------------------------------------------------ from callers

    def request(self, reply_to: ReplyTo, message: dict[str, Any]) -> Answer | Forward:
        """What to do with a caller's message: answer it here, or forward it rewritten.

        Raises:
            BadRequest: ``message`` is not a JSON-RPC 2.0 request or notification.
        """
        method = message.get("method")
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str) or not method:
            raise BadRequest('message is not a JSON-RPC 2.0 request: expected {"jsonrpc": "2.0", "method": ...}')
        if "id" not in message:  # a notification
            if method == "notifications/initialized":
                return Answer({})  # the runtime did the handshake
            if method == "notifications/cancelled":
                return self._cancelled(reply_to, message)
            return Forward(encode_line(message))
        caller_id = message["id"]
        if caller_id is None or isinstance(caller_id, bool) or not isinstance(caller_id, (str, int)):
            raise BadRequest(f"message id={caller_id!r} is not valid: expected a string or an integer")
        if method == "initialize":
            if self._initialize_result is None:
                raise BadRequest("the server has not been initialized yet")
            return Answer({"jsonrpc": "2.0", "id": caller_id, "result": self._initialize_result})
        rewritten = {**message, "id": self._register(reply_to, caller_id)}
        return Forward(encode_line(rewritten))

    def _register(self, reply_to: ReplyTo | None, caller_id: Any) -> int:
        with self._lock:
            runtime_id = next(self._ids)
            self._pending[runtime_id] = _Pending(reply_to, caller_id, time.monotonic())
        return runtime_id

    def _cancelled(self, reply_to: ReplyTo, message: dict[str, Any]) -> Answer | Forward:
        params = message.get("params")
        wanted = params.get("requestId") if isinstance(params, dict) else None
        with self._lock:
            for runtime_id, pending in self._pending.items():
                caller = pending.reply_to
                if caller is not None and caller.identity == reply_to.identity and pending.caller_id == wanted:
                    assert isinstance(params, dict)
                    return Forward(encode_line({**message, "params": {**params, "requestId": runtime_id}}))
        return Answer({})  # nothing of this caller's is in flight under that id: nothing to cancel

    # ------------------------------------------------------------------ from the server

    def incoming(self, message: Any) -> Reply | Notify | Forward | None:
        """What to do with one message from the server (``None``: nothing)."""
        if not isinstance(message, dict):
            return None
        method = message.get("method")
        if isinstance(method, str):
            if "id" not in message:
                return Notify(message)
            if method == "ping":
                return Forward(encode_line({"jsonrpc": "2.0", "id": message["id"], "result": {}}))
            error = {"code": _METHOD_NOT_FOUND, "message": f"{method} is not available through the runtime's relay"}
            return Forward(encode_line({"jsonrpc": "2.0", "id": message["id"], "error": error}))
        runtime_id = message.get("id")
        with self._lock:
            pending = self._pending.pop(runtime_id, None) if isinstance(runtime_id, int) else None
        if pending is None:
            return None  # an answer to a request that expired, or to none
        if pending.reply_to is None:
            if isinstance(message.get("result"), dict):
                self._initialize_result = message["result"]
            else:
                self._initialize_error = message.get("error") or {"message": "no result"}
            return None
        return Reply(pending.reply_to, {**message, "id": pending.caller_id})

    # ------------------------------------------------------------------ endings

    def expired(self, older_than_s: float) -> list[ReplyTo]:
        """Forget the callers' requests sent more than ``older_than_s`` ago; return whom to tell."""
        cutoff = time.monotonic() - older_than_s
        with self._lock:
            old = [key for key, pending in self._pending.items() if pending.sent_at < cutoff]
            return [reply_to for key in old if (reply_to := self._pending.pop(key).reply_to) is not None]

    def abandon(self) -> list[ReplyTo]:
        """Forget every request in flight (the process ended); return whom to tell."""
        with self._lock:
            callers = [pending.reply_to for pending in self._pending.values() if pending.reply_to is not None]
            self._pending.clear()
        return callers

    @property
    def in_flight(self) -> int:
        """Requests sent to the server and not answered yet."""
        with self._lock:
            return len(self._pending)


class Lines:
    """Splits a byte stream into lines (a line longer than 64 MiB is dropped, not kept growing)."""

    def __init__(self) -> None:
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, without their newlines (empty lines skipped)."""
        self._partial += data
        if b"\n" not in data:
            if len(self._partial) > _MAX_LINE:
                self._partial.clear()
            return []
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        return [line.rstrip(b"\r") for line in lines if line.strip()]

    def reset(self) -> None:
        """Forget a partial line (output went missing in between)."""
        self._partial.clear()
