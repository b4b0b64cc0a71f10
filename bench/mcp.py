"""An MCP ``tools/call`` through the runtime's relay against the same server over plain stdio, in one run.

The runtime (``workspaces serve`` with ``WORKSPACE_MCP_CONFIG``) runs in its own process,
as deployed, and auto-starts the demo server (``scripts/build-mcp-demo-image.sh``) in its
workspace. This process then keeps these sessions open and, in alternating rounds, calls
the tool ``add`` once per sample on each:

1. direct (the baseline): the official MCP SDK client (``stdio_client`` and
   ``ClientSession``) on a second copy of the same server program in the same workspace
   container, over ``docker exec -i``: what an MCP client would get without the runtime;
2. relay: the same SDK client on ``workspaces mcp connect demo``, which relays each
   message as an ``mcp_call`` to the runtime, which hands it to the server it runs;
3. ``mcp_call`` from a ``runtime.wire.Client`` in this process: the runtime's part
   alone, without the relay process and the SDK;
4. JSON lines written and read by hand over ``docker exec -i``: the direct path without
   the SDK, to set against (3).

A second table splits (3): a ``ping`` (one request through the runtime and back) and an
empty ``exec_stdin`` to the server's process (the write half of a call: the runtime
hands the line to the workspace's agent), both from the same client.

Everything is removed afterwards: the runtime is stopped (SIGINT), then the server's
workspace (its container and volume, by label) and the state directory.

    python -m bench.mcp [--n 300]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import docker
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench.common import free_port
from bench.stats import summary, table
from runtime.errors import WorkspaceError
from runtime.messages import McpServerStatus
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE
from runtime.providers.docker import MANAGED_NETWORK
from runtime.wire import Client

IMAGE = "agent-workspaces/mcp-demo:latest"
SERVER = "demo"
COMMAND = ["python3", "/opt/mcp/server.py"]
BASELINE = "direct: SDK over docker exec -i (baseline)"
RELAY = "relay: SDK over workspaces mcp connect"
MCP_CALL = "runtime: mcp_call from wire.Client"
RAW_DIRECT = "direct: JSON lines over docker exec -i"
PING = "runtime: ping (the wire's floor)"
STDIN = "runtime: exec_stdin of 0 bytes to the server"
ROOT = Path(__file__).resolve().parent.parent
_PROTOCOL = "2025-06-18"


async def interleaved(
    paths: dict[str, Callable[[], Awaitable[object]]], n: int, warmup: int, rounds: int = 10
) -> dict[str, list[float]]:
    """``bench.stats.interleaved`` for coroutines: each path timed in alternating rounds."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for call in paths.values():
        for _ in range(warmup):
            await call()
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, call in paths.items():
            bucket = samples[name]
            for _ in range(per_round):
                began = time.perf_counter()
                await call()
                bucket.append(time.perf_counter() - began)
    return samples


class Lines:
    """MCP as JSON lines on a process's stdin and stdout, by hand (no SDK)."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._ids = itertools.count(1)

    async def send(self, message: dict[str, Any]) -> None:
        await self._stdin.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:  # notifications (logging) are skipped
            reply = json.loads(await self._stdout.receive_until(b"\n", 1 << 20))
            if reply.get("id") == request_id:
                return reply

    async def initialize(self) -> None:
        client = {"name": "bench", "version": "0"}
        params = {"protocolVersion": _PROTOCOL, "capabilities": {}, "clientInfo": client}
        assert "result" in await self.request("initialize", params)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


def _add_params(a: int) -> dict[str, Any]:
    return {"name": "add", "arguments": {"a": a, "b": 1}}


def _check(reply: dict[str, Any], a: int) -> None:
    assert reply["result"]["content"][0]["text"] == str(a + 1), reply


async def _measure(
    client: Client, server: McpServerStatus, relay_env: dict[str, str], n: int, warmup: int
) -> dict[str, list[float]]:
    assert server.workspace_id and server.process_id
    workspace_id, process_id = server.workspace_id, server.process_id
    container = f"aw-{workspace_id}"
    direct = StdioServerParameters(command="docker", args=["exec", "-i", container, *COMMAND])
    relay = StdioServerParameters(
        command=str(Path(sys.executable).parent / "workspaces"), args=["mcp", "connect", SERVER], env=relay_env
    )
    async with contextlib.AsyncExitStack() as stack:
        sessions: list[ClientSession] = []
        for parameters in (direct, relay):
            read, write = await stack.enter_async_context(stdio_client(parameters))
            session = await stack.enter_async_context(ClientSession(read, write, read_timeout_seconds=60))
            await session.initialize()
            await session.list_tools()  # the SDK checks results against the tools' output schemas
            sessions.append(session)
        process = await stack.enter_async_context(
            await anyio.open_process(["docker", "exec", "-i", container, *COMMAND], stderr=subprocess.DEVNULL)
        )
        lines = Lines(process)
        await lines.initialize()
        counter = itertools.count(1)

        def sdk_call(session: ClientSession) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                a = next(counter)
                result = await session.call_tool("add", {"a": a, "b": 1})
                assert not result.is_error and result.structured_content == {"result": a + 1}, result

            return call

        async def mcp_call() -> None:
            a = next(counter)
            message = {"jsonrpc": "2.0", "id": a, "method": "tools/call", "params": _add_params(a)}
            _check(client.mcp_call(SERVER, message), a)  # blocking on the loop: nothing else is running

        async def raw_direct() -> None:
            a = next(counter)
            _check(await lines.request("tools/call", _add_params(a)), a)

        async def ping() -> None:
            client.ping()

        async def stdin() -> None:
            client.exec_stdin(workspace_id, process_id, b"")

        samples = await interleaved(
            {
                BASELINE: sdk_call(sessions[0]),
                RELAY: sdk_call(sessions[1]),
                MCP_CALL: mcp_call,
                RAW_DIRECT: raw_direct,
                PING: ping,
                STDIN: stdin,
            },
            n,
            warmup,
        )
        await process.aclose()
    return samples


def _wait_ready(
    server: subprocess.Popen[bytes], endpoint: str, state: str, seen: set[str], timeout_s: float
) -> McpServerStatus:
    """The demo server, once ``mcp_list`` says it is ready (workspace ids seen on the way go in ``seen``)."""
    deadline = time.monotonic() + timeout_s
    token_file = Path(state) / "token"
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"workspaces serve exited with {server.returncode}")
        if token_file.exists():
            try:
                with Client(endpoint, token_file.read_text().strip(), timeout_s=5) as client:
                    for status in client.mcp_list():
                        if status.workspace_id:
                            seen.add(status.workspace_id)
                        if status.name == SERVER:
                            last = f"{status.state} {status.error or ''}".strip()
                            if status.state == "ready" and status.workspace_id and status.process_id:
                                return status
            except (WorkspaceError, OSError) as exc:  # still starting: the deadline decides
                last = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"MCP server {SERVER} not ready within {timeout_s:g} s: {last}")


def _remove_workspaces(workspace_ids: set[str]) -> None:
    """Remove the containers and volumes of ``workspace_ids`` and any other of their runtime instance."""
    api = docker.from_env().api
    instances: set[str] = set()
    for workspace_id in workspace_ids:
        for container in api.containers(all=True, filters={"label": f"{LABEL_ID}={workspace_id}"}):
            instance = (container.get("Labels") or {}).get(LABEL_INSTANCE)
            if instance:
                instances.add(instance)
    filters = [f"{LABEL_ID}={workspace_id}" for workspace_id in workspace_ids]
    filters += [f"{LABEL_INSTANCE}={instance}" for instance in instances]
    for label in filters:
        for container in api.containers(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True, v=True)
        for volume in api.volumes(filters={"label": label}).get("Volumes") or []:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(volume["Name"], force=True)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args()
    subprocess.run(
        [str(ROOT / "scripts" / "build-mcp-demo-image.sh"), args.image],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PY": sys.executable},
    )
    had_network = bool(docker.from_env().networks.list(names=[MANAGED_NETWORK]))
    workspace_ids: set[str] = set()
    with tempfile.TemporaryDirectory() as state:
        config = Path(state) / "mcp.toml"
        config.write_text(f"[[servers]]\nname = {json.dumps(SERVER)}\nimage = {json.dumps(args.image)}\n"
                          f"command = {json.dumps(COMMAND)}\n")  # fmt: skip
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        runtime_env = {
            "WORKSPACE_STATE_DIR": str(Path(state) / "runtime"),
            "WORKSPACE_ZMQ_ENDPOINT": endpoint,
            "WORKSPACE_ZMQ_EVENTS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        }
        env = {
            **os.environ,
            **runtime_env,
            "ENABLE_AGENT_WORKSPACES": "true",
            "WORKSPACE_HTTP_ADDR": "",
            "WORKSPACE_MCP_CONFIG": str(config),
        }
        env.pop("WORKSPACE_AUTH_TOKEN", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "--log-level", "WARNING", "serve"], env=env, cwd=ROOT
        )
        try:
            status = _wait_ready(server, endpoint, runtime_env["WORKSPACE_STATE_DIR"], workspace_ids, 300)
            token = (Path(runtime_env["WORKSPACE_STATE_DIR"]) / "token").read_text().strip()
            with Client(endpoint, token, timeout_s=60) as client:
                samples = anyio.run(_measure, client, status, runtime_env, args.n, args.warmup)
                workspace_ids.update(status.workspace_id for status in client.mcp_list() if status.workspace_id)
            rows = {name: summary(name, values) for name, values in samples.items()}
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            _remove_workspaces(workspace_ids)
            if not had_network:
                for network in docker.from_env().networks.list(names=[MANAGED_NETWORK]):
                    network.remove()
    print(table([rows[name] for name in (BASELINE, RELAY, MCP_CALL, RAW_DIRECT)], baseline=BASELINE))
    print()
    print(table([rows[name] for name in (MCP_CALL, PING, STDIN)], baseline=MCP_CALL))


if __name__ == "__main__":
    main()
