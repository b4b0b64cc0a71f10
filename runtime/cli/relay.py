"""``workspaces mcp connect NAME``: MCP on standard input and output, relayed through the runtime.

An MCP client (a desktop app, an agent framework) launches this command as its stdio
server. Each JSON-RPC line it writes becomes an ``mcp_call`` to the runtime, sent at once
(calls run concurrently; responses are written as they come, each one line); the
server's notifications arrive as ``mcp.notification`` events and are written too. One
connection to the runtime carries every call, so a ``notifications/cancelled`` reaches the
call it names. While the server is still starting, calls are retried with the same
request id (never run twice) for up to ``wait_s``. A runtime error becomes a JSON-RPC
error whose ``data`` carries the wire ``code`` and ``retryable``. The relay ends when its
standard input does, once the calls in flight are answered.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import IO, Any

import msgspec
import zmq
import zmq.asyncio

from runtime.errors import Timeout, WorkspaceError, error_for_code
from runtime.http.sse import subscribe
from runtime.messages import McpCallArgs, Reply, Request, decode_reply, encode
from runtime.wire.keys import KeyPair
from runtime.wire.security import client_options

__all__ = ["relay"]

_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600
_INTERNAL_ERROR = -32603
_RETRY_PAUSE_S = 0.2
_RETRY_PAUSE_MAX_S = 2.0
_MAX_LINE = 64 << 20


class _Relay:
    def __init__(self, name: str, token: str, out: IO[bytes], timeout_s: float, wait_s: float) -> None:
        self._name = name
        self.token = token
        self._out = out
        self._timeout_s = timeout_s
        self._wait_s = wait_s
        self._ids = (f"relay-{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self.closed = False  # the MCP client stopped reading

    def write(self, message: Any) -> None:
        if self.closed:
            return
        try:
            self._out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            self._out.flush()
        except (BrokenPipeError, ValueError):  # the MCP client has gone (ValueError: the file is closed)
            self.closed = True

    async def replies(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            reply = decode_reply(await socket.recv())
            future = self._waiting.get(reply.id)
            if future is not None and not future.done():
                future.set_result(reply)

    async def notifications(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            frames = await socket.recv_multipart()
            if len(frames) != 2:
                continue
            event = msgspec.msgpack.decode(frames[1])
            if event.get("type") == "mcp.notification" and event.get("name") == self._name:
                self.write(event["message"])

    async def call(self, socket: zmq.asyncio.Socket, message: dict[str, Any]) -> None:
        try:
            result = await self._call(socket, message)
        except WorkspaceError as exc:
            if "id" in message:
                code = _INVALID_REQUEST if exc.code == "bad_request" else _INTERNAL_ERROR
                data = {"code": exc.code, "retryable": exc.retryable}
                self.write({"jsonrpc": "2.0", "id": message["id"], "error": {"code": code, "message": exc.message,
                                                                             "data": data}})  # fmt: skip
            return
        if "id" in message:
            self.write(result)

    async def _call(self, socket: zmq.asyncio.Socket, message: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        args = msgspec.Raw(encode(McpCallArgs(name=self._name, message=message)))
        payload = encode(Request(request_id, "mcp_call", self.token, args))
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._wait_s
        pause = _RETRY_PAUSE_S
        try:
            while True:  # the same id every time: the runtime runs it once
                future = self._waiting[request_id] = loop.create_future()
                await socket.send(payload)
                try:
                    reply = await asyncio.wait_for(future, self._timeout_s)
                except TimeoutError:
                    raise Timeout(f"no answer from MCP server {self._name} within {self._timeout_s:g} s") from None
                if reply.ok:
                    return msgspec.msgpack.decode(reply.result)
                error = reply.error
                assert error is not None
                if not error.retryable or loop.time() + pause > give_up:
                    raise error_for_code(error.code, error.message, error.retryable)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_PAUSE_MAX_S)
        finally:
            self._waiting.pop(request_id, None)


async def _line_reader(stdin: IO[bytes]) -> Callable[[], Awaitable[bytes]]:
    """Reads one line at a time: on the event loop from a pipe or socket (as MCP clients connect), else on a thread.

    (A file cannot be polled, and a terminal must not be left non-blocking for the shell.)
    """
    mode = os.fstat(stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return lambda: asyncio.to_thread(stdin.readline)
    reader = asyncio.StreamReader(limit=_MAX_LINE)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    return reader.readline


async def _run(
    relay: _Relay, endpoint: str, events_endpoint: str, stdin: IO[bytes], curve: tuple[bytes, KeyPair] | None
) -> int:
    server_key, client_keys = curve or (None, None)
    context = zmq.Context()
    socket = zmq.asyncio.Context.shadow(context.underlying).socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    for option, value in client_options(server_key=server_key, client_keys=client_keys):
        socket.setsockopt(option, value)
    socket.connect(endpoint)
    security = client_options(server_key=server_key, client_keys=client_keys, plain_token=relay.token)
    events = await subscribe(context, events_endpoint, ("mcp",), options=security)
    background = [asyncio.create_task(relay.replies(socket)), asyncio.create_task(relay.notifications(events))]
    calls: set[asyncio.Task[None]] = set()
    try:
        read_line = await _line_reader(stdin)
        while True:
            try:
                line = await read_line()
            except ValueError:  # longer than _MAX_LINE: dropped
                relay.write({"jsonrpc": "2.0", "id": None, "error": {"code": _PARSE_ERROR, "message": "Line too long"}})
                continue
            if not line:
                break
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                relay.write({"jsonrpc": "2.0", "id": None, "error": {"code": _PARSE_ERROR, "message": "Parse error"}})
                continue
            if not isinstance(message, dict) or "method" not in message:
                continue  # a response to a request of the server's: the runtime answered those itself
            task = asyncio.create_task(relay.call(socket, message))
            calls.add(task)
            task.add_done_callback(calls.discard)
        if calls:
            await asyncio.wait(calls)
    finally:
        for task in background:
            task.cancel()
        socket.close()
        events.close()
        context.destroy(linger=0)
    return 0


def relay(
    endpoint: str,
    events_endpoint: str,
    token: str,
    name: str,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    timeout_s: float = 310.0,
    wait_s: float = 60.0,
    curve: tuple[bytes, KeyPair] | None = None,
) -> int:
    """Relay MCP between ``stdin``/``stdout`` (the process's own by default) and the server ``name``.

    Args:
        endpoint: The runtime's request endpoint.
        events_endpoint: Its event endpoint (for the server's notifications).
        token: The runtime's token.
        name: The MCP server.
        stdin: Where the MCP client's messages come from.
        stdout: Where responses and notifications go.
        timeout_s: How long one call may take.
        wait_s: How long calls are retried while the server is not ready.
        curve: Connect by CURVE: the server's public key and this client's key pair.
    """
    session = _Relay(name, token, stdout or sys.stdout.buffer, timeout_s, wait_s)
    return asyncio.run(_run(session, endpoint, events_endpoint, stdin or sys.stdin.buffer, curve))
