"""A stdio bridge to an MCP server that speaks streamable HTTP, run inside its workspace.

Sent whole as ``python3 -c`` (the standard library only, Python 3.8+), with the port,
the path and the server's command as arguments. It starts the server, waits for its
port, then carries each JSON-RPC line of its stdin to ``POST http://127.0.0.1:PORT/PATH``
(each on its own thread: a slow call does not hold the others) and writes every message
of the answers (JSON, or server-sent events) to its stdout as one line, keeping the
``Mcp-Session-Id`` and the negotiated protocol version. Messages the server sends on its
own (the GET stream) are written too. It ends with the server, or when its stdin ends.
So the runtime relays an HTTP server exactly as it relays a stdio one, from inside the
workspace (its network is not reachable from the host).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

__all__ = ["main"]

_STARTUP_S = 60.0
_state = {"session": "", "version": ""}
_out_lock = threading.Lock()


def _emit(message: object) -> None:
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def _headers() -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if _state["session"]:
        headers["Mcp-Session-Id"] = _state["session"]
    if _state["version"]:
        headers["MCP-Protocol-Version"] = _state["version"]
    return headers


def _events(response: object) -> None:
    """Emit each ``data:`` message of a server-sent event stream."""
    data: list[str] = []
    for raw in response:  # type: ignore[attr-defined]
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif not line and data:
            _emit(json.loads("\n".join(data)))
            data = []


def _post(url: str, body: bytes, message: dict) -> None:  # type: ignore[type-arg]
    request = urllib.request.Request(url, data=body, headers=_headers(), method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            session = response.headers.get("Mcp-Session-Id")
            if session:
                _state["session"] = session
            kind = response.headers.get("Content-Type", "")
            if kind.startswith("text/event-stream"):
                _events(response)
                return
            payload = response.read()
            if payload.strip():
                answer = json.loads(payload)
                if message.get("method") == "initialize" and isinstance(answer, dict):
                    _state["version"] = str(answer.get("result", {}).get("protocolVersion", ""))
                _emit(answer)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        if "id" in message:
            text = exc.read().decode("utf-8", "replace")[:500] if isinstance(exc, urllib.error.HTTPError) else ""
            error = {"code": -32603, "message": f"the server's HTTP endpoint failed: {exc} {text}"}
            _emit({"jsonrpc": "2.0", "id": message["id"], "error": error})


def _listen(url: str) -> None:
    """The server's own stream (GET): its notifications and requests; a server may not offer one."""
    headers = {key: value for key, value in _headers().items() if key != "Content-Type"}
    headers["Accept"] = "text/event-stream"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers, method="GET")) as response:
            _events(response)
    except (urllib.error.URLError, OSError, ValueError):
        pass


def _wait_for_port(port: int, server: subprocess.Popen) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + _STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.stderr.write(f"the MCP server exited with code {server.returncode} before it listened\n")
            sys.exit(server.returncode or 1)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.stderr.write(f"the MCP server did not listen on port {port} within {_STARTUP_S:.0f} s\n")
    server.kill()
    sys.exit(1)


def _watch(server: subprocess.Popen) -> None:  # type: ignore[type-arg]
    code = server.wait()
    sys.stderr.write(f"the MCP server exited with code {code}\n")
    sys.stderr.flush()
    os._exit(code if code > 0 else 1)


def main(argv: list[str]) -> None:
    """``PORT PATH -- COMMAND...``: bridge this process's stdin and stdout to the server."""
    port, path, command = int(argv[0]), argv[1], argv[3:]
    url = f"http://127.0.0.1:{port}{path}"
    err = sys.stderr.fileno()
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    _wait_for_port(port, server)
    threading.Thread(target=_watch, args=(server,), daemon=True).start()
    listening = False
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("method") == "notifications/initialized" and not listening:
            listening = True
            threading.Thread(target=_listen, args=(url,), daemon=True).start()
        threading.Thread(target=_post, args=(url, line, message), daemon=True).start()
    server.terminate()
    server.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
