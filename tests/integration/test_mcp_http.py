"""The official MCP SDK's streamable HTTP client against the runtime's /mcp/{name}, on real Docker.

The demo server (examples/mcp/demo_server.py) runs in its own persistent workspace; the
client reaches it through the runtime's HTTP API with the bearer token, as any MCP
client configured with a URL and an ``Authorization`` header would.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from runtime.app import Runtime
from runtime.mcp import MCP_LABEL
from runtime.messages import McpServerStatus
from runtime.wire import Client
from tests.conftest import MCP_DEMO_COMMAND, MakeDockerRuntime, write_mcp_config

pytestmark = pytest.mark.docker

_READY_TIMEOUT_S = 180.0
"""The first start pulls nothing (the image is built) but boots a gVisor sandbox and Python."""


def wait_ready(client: Client, name: str) -> McpServerStatus:
    """The server's status once ``ready`` (``mcp_list`` polled within a deadline)."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    pause = threading.Event()
    while True:
        status = next(server for server in client.mcp_list() if server.name == name)
        if status.state == "ready":
            return status
        assert time.monotonic() < deadline, f"MCP server {name} never became ready: {status}"
        pause.wait(0.2)


async def use_demo(url: str, token: str) -> dict[str, Any]:
    """Initialize, list the tools and call ``add`` and ``whoami`` with the SDK's client session."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        initialized = await session.initialize()
        tools = await session.list_tools()
        added = await session.call_tool("add", {"a": 2, "b": 40})
        whoami = await session.call_tool("whoami", {})
    return {"initialized": initialized, "tools": tools, "added": added, "whoami": whoami}


def destroy_mcp_workspaces(runtime: Runtime) -> None:
    """Stop the MCP servers' runners (they re-create a workspace destroyed under them), then destroy theirs."""
    context = runtime.context
    if context is not None and context.mcp is not None:
        context.mcp.stop()
    with runtime.client(timeout_s=120.0) as client:
        for record in client.list(labels={MCP_LABEL: "demo"}):
            client.destroy(record.id)


def test_the_official_mcp_client_calls_the_demo_server_over_streamable_http(
    make_docker_runtime: MakeDockerRuntime, mcp_demo_image: str, tmp_path: Path
) -> None:
    config = write_mcp_config(
        tmp_path / "mcp.toml", [{"name": "demo", "image": mcp_demo_image, "command": MCP_DEMO_COMMAND}]
    )
    runtime = make_docker_runtime(http_addr="127.0.0.1:0", mcp_config=config)
    url = f"http://{runtime.http_address}/api/v1/agent/workspaces/mcp/demo"
    try:
        with runtime.client() as client:
            status = wait_ready(client, "demo")
        used = asyncio.run(use_demo(url, runtime.token))
    finally:
        destroy_mcp_workspaces(runtime)
    assert used["initialized"].server_info.name == "demo"
    assert {tool.name for tool in used["tools"].tools} >= {"echo", "add", "whoami"}
    added = used["added"]
    assert not added.is_error
    assert added.content[0].text == "42"
    # The one server process the runtime started, in its workspace: not a process of this machine's.
    host, _, pid = used["whoami"].content[0].text.rpartition(":")
    assert host != os.uname().nodename
    assert status.workspace_id is not None and pid.isdigit()
