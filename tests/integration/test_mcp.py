"""MCP servers in real workspaces (Docker + gVisor), driven by the official MCP SDK's client.

The demo server (examples/mcp/demo_server.py, on the SDK's ``MCPServer``) is built into a
local image; the runtime auto-starts it and the SDK's ``stdio_client`` reaches it through
``workspaces mcp connect``, as a desktop MCP client would.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from runtime.app import Runtime
from runtime.mcp import FAILED_TO_START, MCP_LABEL
from runtime.messages import McpServerStatus
from runtime.wire import Client
from tests.conftest import MCP_DEMO_COMMAND, ROOT, MakeDockerRuntime, write_mcp_config
from tests.helpers import poll_until

pytestmark = pytest.mark.docker

WORKSPACES = str(Path(sys.executable).parent / "workspaces")


@pytest.fixture
def config(tmp_path: Path, mcp_demo_image: str) -> Path:
    return write_mcp_config(
        tmp_path / "mcp.toml",
        [
            {"name": "demo", "image": mcp_demo_image, "command": MCP_DEMO_COMMAND, "resources": {"memory": "256M"}},
            {"name": "missing", "image": "agent-workspaces/no-such-mcp-image:1", "command": "serve"},
            {
                "name": "web",
                "image": mcp_demo_image,
                "command": [*MCP_DEMO_COMMAND, "--http", "8931"],
                "transport": "streamable-http",
                "port": 8931,
                "resources": {"memory": "256M"},
            },
        ],
    )


@pytest.fixture
def runtime(make_docker_runtime: MakeDockerRuntime, config: Path) -> Iterator[Runtime]:
    runtime = make_docker_runtime(mcp_config=config)
    yield runtime
    destroy_mcp_workspaces(runtime)


def destroy_mcp_workspaces(runtime: Runtime) -> None:
    """Stop the servers (their workspaces are persistent), then destroy what they ran in."""
    if runtime.context is None or runtime.context.mcp is None:
        return
    runtime.context.mcp.stop()
    with runtime.client() as client:
        for record in client.list():
            if MCP_LABEL in record.labels:
                client.destroy(record.id)


def status(client: Client, name: str) -> McpServerStatus:
    return next(server for server in client.mcp_list() if server.name == name)


def wait_ready(client: Client, name: str, restarts: int = 0) -> McpServerStatus:
    poll_until(lambda: (s := status(client, name)).state == "ready" and s.restarts >= restarts, timeout_s=120)
    return status(client, name)


def connect_params(runtime: Runtime, name: str) -> StdioServerParameters:
    env = {
        **os.environ,
        "WORKSPACE_ZMQ_ENDPOINT": runtime.endpoint,
        "WORKSPACE_ZMQ_EVENTS_ENDPOINT": runtime.events_endpoint,
        "WORKSPACE_AUTH_TOKEN": runtime.token,
        "WORKSPACE_CONFIG": str(ROOT / "configs" / "default.toml"),
    }
    return StdioServerParameters(command=WORKSPACES, args=["mcp", "connect", name], env=env, cwd=str(ROOT))


async def session_adds(runtime: Runtime, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    """One MCP session through `workspaces mcp connect demo`: initialize, list the tools, add each pair."""
    async with stdio_client(connect_params(runtime, "demo")) as (read, write), ClientSession(read, write) as session:
        initialized = await session.initialize()
        tools = await session.list_tools()
        sums = []
        for a, b in pairs:
            result = await session.call_tool("add", {"a": a, "b": b})
            assert not result.is_error
            sums.append(result.structured_content)
        where = await session.call_tool("whoami", {})
    return {
        "server": initialized.server_info.name,
        "tools": sorted(tool.name for tool in tools.tools),
        "sums": sums,
        "where": where.content[0].text,  # type: ignore[union-attr]
    }


def test_the_sdks_stdio_client_reaches_the_server_through_the_relay(runtime: Runtime) -> None:
    with runtime.client() as client:
        demo = wait_ready(client, "demo")
        record = client.get(demo.workspace_id or "")
        assert (record.persistent, record.labels, record.runtime) == (True, {MCP_LABEL: "demo"}, "runsc")
    answer = anyio.run(session_adds, runtime, [(2, 3), (40, 2)])
    assert answer["server"] == "demo"
    assert answer["tools"] == ["add", "echo", "whoami"]
    assert answer["sums"] == [{"result": 5}, {"result": 42}]


def test_two_clients_at_once_get_their_own_answers(runtime: Runtime) -> None:
    with runtime.client() as client:
        wait_ready(client, "demo")
    answers: dict[int, dict[str, Any]] = {}

    async def both() -> None:
        async def one(n: int) -> None:
            answers[n] = await session_adds(runtime, [(n, i) for i in range(10)])

        async with anyio.create_task_group() as group:
            group.start_soon(one, 100)
            group.start_soon(one, 200)

    anyio.run(both)
    for n in (100, 200):
        assert answers[n]["sums"] == [{"result": n + i} for i in range(10)]
    assert answers[100]["where"] == answers[200]["where"]  # one server process, shared


def test_a_server_with_a_missing_image_is_failed_logged_and_leaves_no_container(
    runtime: Runtime, docker_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    with runtime.client() as client:
        poll_until(lambda: status(client, "missing").state == "failed", timeout_s=60)
        missing = status(client, "missing")
        assert "image not found locally" in (missing.error or "")
        assert "agent-workspaces/no-such-mcp-image:1" in (missing.error or "")
        assert not [r for r in client.list() if r.labels.get(MCP_LABEL) == "missing"]
    logged = [r.getMessage() for r in caplog.records if FAILED_TO_START in r.getMessage()]
    assert any("missing: " in line and "image not found locally" in line for line in logged)
    labelled = docker_client.api.containers(
        all=True, filters={"label": f"agent-workspaces.instance={runtime.instance_id}"}
    )
    names = {c["Names"][0] for c in labelled}
    assert len(names) == 2  # demo's and web's: none for the missing image


def test_killing_the_server_process_restarts_it_and_it_works_again(runtime: Runtime) -> None:
    with runtime.client() as client:
        first = wait_ready(client, "demo")
        killed = client.exec(first.workspace_id or "", ["pkill", "-f", "/opt/mcp/server.py"])
        assert killed.exit_code == 0
        again = wait_ready(client, "demo", restarts=1)
        assert again.workspace_id == first.workspace_id
        assert again.process_id != first.process_id
    assert anyio.run(session_adds, runtime, [(1, 1)])["sums"] == [{"result": 2}]


def test_a_streamable_http_server_is_reached_through_its_bridge(runtime: Runtime) -> None:
    with runtime.client() as client:
        web = wait_ready(client, "web")
        assert web.transport == "streamable-http"
        params = {"name": "add", "arguments": {"a": 5, "b": 6}}
        call = {"jsonrpc": "2.0", "id": "w1", "method": "tools/call", "params": params}
        response = client.mcp_call("web", call)
        assert response["id"] == "w1"
        assert response["result"]["structuredContent"] == {"result": 11}
        listed = client.mcp_call("web", {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert {tool["name"] for tool in listed["result"]["tools"]} == {"add", "echo", "whoami"}


def test_a_restarted_runtime_reuses_the_workspace_and_runs_one_server_process(
    make_docker_runtime: MakeDockerRuntime, config: Path
) -> None:
    first = make_docker_runtime(mcp_config=config)
    with first.client() as client:
        workspace_id = wait_ready(client, "demo").workspace_id or ""
    first.stop()
    second = make_docker_runtime(mcp_config=config)
    try:
        with second.client() as client:
            assert wait_ready(client, "demo").workspace_id == workspace_id
            count = client.exec(workspace_id, ["pgrep", "-fc", "python3 /opt/mcp/server.py"])
            assert count.stdout.strip() == b"1"  # the one before ended with its stdin
        assert anyio.run(session_adds, second, [(3, 4)])["sums"] == [{"result": 7}]
    finally:
        destroy_mcp_workspaces(second)


def test_mcp_ls_and_doctor_report_the_servers(runtime: Runtime, config: Path) -> None:
    env = {
        **os.environ,
        "WORKSPACE_ZMQ_ENDPOINT": runtime.endpoint,
        "WORKSPACE_ZMQ_EVENTS_ENDPOINT": runtime.events_endpoint,
        "WORKSPACE_AUTH_TOKEN": runtime.token,
        "WORKSPACE_MCP_CONFIG": str(config),
        "ENABLE_AGENT_WORKSPACES": "true",
    }
    with runtime.client() as client:
        wait_ready(client, "demo")
        poll_until(lambda: status(client, "missing").state == "failed", timeout_s=60)
    listed = subprocess.run([WORKSPACES, "mcp", "ls"], env=env, cwd=ROOT, capture_output=True, timeout=60, check=True)
    rows = {line.split()[0]: line for line in listed.stdout.decode().splitlines()[1:]}
    assert rows["demo"].split()[1:3] == ["ready", status(runtime.client(), "demo").workspace_id]
    assert rows["missing"].split()[1] == "failed" and "image not found locally" in rows["missing"]
    doctor = subprocess.run(
        [WORKSPACES, "doctor", "--json"], env=env, cwd=ROOT, capture_output=True, timeout=120, check=False
    )
    checks = {check["name"]: check for check in json.loads(doctor.stdout)}
    assert checks["mcp servers"]["status"] == "PASS"
    assert checks["mcp images"]["status"] == "FAIL"
    assert "agent-workspaces/no-such-mcp-image:1 (server missing)" in checks["mcp images"]["detail"]
    assert checks["mcp status"]["status"] == "FAIL"
    assert "missing: " in checks["mcp status"]["detail"] and FAILED_TO_START in checks["mcp status"]["detail"]
    assert doctor.returncode == 1
