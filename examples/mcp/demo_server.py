"""A small MCP server on the official Python SDK: tools ``echo``, ``add`` and ``whoami``.

``python3 demo_server.py`` speaks MCP on stdin/stdout; ``python3 demo_server.py --http PORT``
serves streamable HTTP at ``http://127.0.0.1:PORT/mcp``. ``scripts/build-mcp-demo-image.sh``
builds it into ``agent-workspaces/mcp-demo:latest``; configs/mcp.example.toml runs it.
"""

from __future__ import annotations

import os
import sys

from mcp.server import MCPServer

app = MCPServer("demo")


@app.tool()
def echo(text: str) -> str:
    """Return the text as given."""
    return text


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
def whoami() -> str:
    """Where this server runs: its host name and process id."""
    return f"{os.uname().nodename}:{os.getpid()}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        app.run(transport="streamable-http", port=int(sys.argv[2]))
    else:
        app.run()
