"""``workspaces mcp connect``'s relay: MCP on a pair of pipes, through a real runtime's sockets."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from runtime.app import Runtime
from runtime.cli.relay import relay
from tests.conftest import MakeSettings, write_mcp_config
from tests.fake_mcp import FakeMcpServer
from tests.fakes import FakeProvider
from tests.helpers import poll_until

FAKE = {"name": "fake", "image": "fake/mcp:1", "command": ["fake-mcp"]}


class Session:
    """The MCP client's end: lines to the relay's stdin, lines from its stdout."""

    def __init__(self, runtime: Runtime, name: str = "fake", wait_s: float = 10.0) -> None:
        to_relay, self._writer = os.pipe()
        self._reader, from_relay = os.pipe()
        self.stdin: IO[bytes] = os.fdopen(to_relay, "rb")
        self.stdout: IO[bytes] = os.fdopen(from_relay, "wb")
        self._send = os.fdopen(self._writer, "wb")
        self._receive = os.fdopen(self._reader, "rb")
        self.exit_code: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.exit_code.append(
                relay(
                    runtime.endpoint,
                    runtime.events_endpoint,
                    runtime.token,
                    name,
                    stdin=self.stdin,
                    stdout=self.stdout,
                    wait_s=wait_s,
                )
            )
        )
        self.thread.start()

    def send(self, message: Any) -> None:
        self._send.write((message if isinstance(message, bytes) else json.dumps(message).encode()) + b"\n")
        self._send.flush()

    def receive(self) -> dict[str, Any]:
        line = self._receive.readline()
        assert line, "the relay closed its output"
        message: dict[str, Any] = json.loads(line)
        return message

    def close(self) -> int:
        self._send.close()
        self.thread.join(30)
        self.stdout.close()
        self._receive.close()
        self.stdin.close()
        return self.exit_code[0]


@pytest.fixture
def runtime(make_settings: MakeSettings, fake_provider: FakeProvider, tmp_path: Path) -> Iterator[Runtime]:
    config = write_mcp_config(tmp_path / "mcp.toml", [FAKE, {**FAKE, "name": "idle", "auto_start": False}])
    runtime = Runtime(make_settings(mcp_config=config), providers={"gvisor": fake_provider}).start()
    with runtime.client() as client:
        poll_until(lambda: client.mcp_list()[0].state == "ready")
    yield runtime
    runtime.stop()


def test_an_mcp_session_runs_through_the_relay(runtime: Runtime) -> None:
    session = Session(runtime)
    session.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}})
    assert session.receive()["result"]["serverInfo"] == {"name": "fake"}
    session.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    session.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert [tool["name"] for tool in session.receive()["result"]["tools"]] == ["add", "echo", "slow", "notify"]
    add = {"name": "add", "arguments": {"a": 40, "b": 2}}
    session.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": add})
    assert session.receive() == {"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "42"}]}}
    assert session.close() == 0


def test_a_slow_call_is_answered_after_a_later_quick_one(runtime: Runtime, fake_provider: FakeProvider) -> None:
    session = Session(runtime)
    slow = {"name": "slow", "arguments": {"text": "z"}}
    session.send({"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": slow})
    session.send({"jsonrpc": "2.0", "id": "quick", "method": "ping"})
    assert session.receive() == {"jsonrpc": "2.0", "id": "quick", "result": {}}
    for server in fake_provider.mcp_servers.values():
        server.release.set()
    assert session.receive()["id"] == "slow"
    assert session.close() == 0


def test_the_servers_notifications_reach_the_client(runtime: Runtime, fake_provider: FakeProvider) -> None:
    session = Session(runtime)
    session.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert session.receive()["id"] == 1  # the relay is subscribed by the time it answers
    (key,) = fake_provider.mcp_servers
    fake_provider.processes[key].output("stdout", FakeMcpServer.notification("tools changed"))
    note = session.receive()
    assert (note["method"], note["params"]["data"]) == ("notifications/message", "tools changed")
    assert "id" not in note
    assert session.close() == 0


def test_runtime_errors_and_bad_lines_become_json_rpc_errors(runtime: Runtime) -> None:
    session = Session(runtime, name="idle", wait_s=0.5)
    session.send(b"{not json")
    assert session.receive() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    session.send({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
    error = session.receive()
    assert error["id"] == 7
    assert error["error"]["code"] == -32603
    assert "auto_start is false" in error["error"]["message"]
    assert error["error"]["data"] == {"code": "provider_unavailable", "retryable": False}
    assert session.close() == 0


def test_a_file_as_standard_input_is_read_too(runtime: Runtime, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}) + "\n")
    responses = tmp_path / "responses.jsonl"
    with requests.open("rb") as stdin, responses.open("wb") as stdout:
        assert relay(runtime.endpoint, runtime.events_endpoint, runtime.token, "fake", stdin=stdin, stdout=stdout) == 0
    assert json.loads(responses.read_text()) == {"jsonrpc": "2.0", "id": 1, "result": {}}
