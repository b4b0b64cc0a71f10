"""An MCP server in memory, for the fast tier: what the fake provider runs for ``fake-mcp``.

It answers ``initialize`` (counting them), ``tools/list``, ``tools/call`` of ``add`` and
``echo``, and ``ping``; ``tools/call`` of ``slow`` is held until ``release`` is set;
``notify`` makes it send a notification. It reads newline-delimited JSON, as MCP's stdio
transport frames it, from whatever chunks its stdin is written in.
"""

from __future__ import annotations

import json
import threading
from typing import Any

__all__ = ["FakeMcpServer"]


class FakeMcpServer:
    """One server process's protocol state."""

    initializes = 0
    """``initialize`` requests seen by every fake server (the runtime should send one per process)."""

    def __init__(self) -> None:
        self._partial = b""
        self.release = threading.Event()
        self.received: list[dict[str, Any]] = []

    def feed(self, data: bytes) -> tuple[bytes, list[tuple[threading.Event, bytes]]]:
        """Answers to write now, and answers held until an event is set."""
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        now, held = b"", []
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            self.received.append(message)
            answer = self._answer(message)
            if answer is None:
                continue
            encoded = json.dumps(answer).encode() + b"\n"
            if message.get("method") == "tools/call" and message["params"]["name"] == "slow":
                held.append((self.release, encoded))
            else:
                now += encoded
        return now, held

    def _answer(self, message: dict[str, Any]) -> dict[str, Any] | None:
        method = message.get("method")
        if "id" not in message:
            return None
        ident = message["id"]
        if method == "initialize":
            FakeMcpServer.initializes += 1
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "fake"}}
            return {"jsonrpc": "2.0", "id": ident, "result": result}
        if method == "tools/list":
            tools = [{"name": name, "inputSchema": {"type": "object"}} for name in ("add", "echo", "slow", "notify")]
            return {"jsonrpc": "2.0", "id": ident, "result": {"tools": tools}}
        if method == "tools/call":
            name, arguments = message["params"]["name"], message["params"].get("arguments", {})
            if name == "add":
                text = str(arguments["a"] + arguments["b"])
            elif name == "notify":
                text = "notified"
            else:
                text = str(arguments.get("text", ""))
            return {"jsonrpc": "2.0", "id": ident, "result": {"content": [{"type": "text", "text": text}]}}
        if method == "ping":
            return {"jsonrpc": "2.0", "id": ident, "result": {}}
        return {"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": f"no method {method}"}}

    @staticmethod
    def notification(text: str) -> bytes:
        """A notification line the server sends on its own."""
        message = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": text}}
        return json.dumps(message).encode() + b"\n"
