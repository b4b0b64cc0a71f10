"""MCP servers on the in-memory provider: started, called by many, restarted, reused, listed, swept."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, NotFound, ProviderUnavailable
from runtime.mcp import FAILED_TO_START, MCP_LABEL
from runtime.messages import McpCallArgs, McpServerStatus
from runtime.wire import Client
from tests.conftest import MakeSettings, write_mcp_config
from tests.fake_mcp import FakeMcpServer
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event

FAKE = {"name": "fake", "image": "fake/mcp:1", "command": ["fake-mcp"]}
ADD = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}

StartRuntime = Callable[..., Runtime]


@pytest.fixture
def start_runtime(make_settings: MakeSettings, fake_provider: FakeProvider, tmp_path: Path) -> Iterator[StartRuntime]:
    started: list[Runtime] = []

    def start(servers: list[dict[str, Any]] = [FAKE]) -> Runtime:  # noqa: B006 - never mutated
        config = write_mcp_config(tmp_path / "mcp.toml", servers)
        runtime = Runtime(make_settings(mcp_config=config), providers={"gvisor": fake_provider}).start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


def server(client: Client, name: str = "fake") -> McpServerStatus:
    return next(status for status in client.mcp_list() if status.name == name)


def ready(client: Client, name: str = "fake", restarts: int = 0) -> McpServerStatus:
    poll_until(lambda: server(client, name).state == "ready" and server(client, name).restarts >= restarts)
    return server(client, name)


def test_a_server_starts_in_its_own_persistent_labelled_workspace(start_runtime: StartRuntime) -> None:
    runtime = start_runtime()
    with runtime.client() as client:
        status = ready(client)
        record = client.get(status.workspace_id or "")
        assert (record.state, record.persistent, record.image) == ("ready", True, "fake/mcp:1")
        assert record.labels == {MCP_LABEL: "fake"}
        processes = client.exec_list(record.id)
        assert [(p.cmd, p.stdin_open, p.running) for p in processes] == [(["fake-mcp"], True, True)]
        assert (status.process_id, status.transport, status.error) == (processes[0].process_id, "stdio", None)


def test_mcp_call_answers_with_the_servers_response(start_runtime: StartRuntime) -> None:
    with start_runtime().client() as client:
        ready(client)
        response = client.mcp_call("fake", ADD)
    assert response == {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "5"}]}}


def test_the_handshake_is_done_once_and_initialize_answered_from_it(
    start_runtime: StartRuntime, fake_provider: FakeProvider
) -> None:
    before = FakeMcpServer.initializes
    with start_runtime().client() as client:
        ready(client)
        for ident in ("a", "b"):
            answer = client.mcp_call("fake", {"jsonrpc": "2.0", "id": ident, "method": "initialize", "params": {}})
            assert answer["id"] == ident
            assert answer["result"]["serverInfo"] == {"name": "fake"}
        assert client.mcp_call("fake", {"jsonrpc": "2.0", "method": "notifications/initialized"}) == {}
    assert FakeMcpServer.initializes - before == 1
    (fake_server,) = fake_provider.mcp_servers.values()
    assert [m["method"] for m in fake_server.received] == ["initialize", "notifications/initialized"]


def test_concurrent_callers_with_the_same_ids_each_get_their_own_answer(start_runtime: StartRuntime) -> None:
    runtime = start_runtime()
    with runtime.client() as client:
        ready(client)
    answers: dict[int, list[Any]] = {}

    def caller(n: int) -> None:
        with runtime.client() as own:
            answers[n] = [
                own.mcp_call("fake", {**ADD, "id": i, "params": {"name": "add", "arguments": {"a": n, "b": i}}})
                for i in range(20)
            ]

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(4):
        assert [(a["id"], a["result"]["content"][0]["text"]) for a in answers[n]] == [
            (i, str(n + i)) for i in range(20)
        ]


def test_a_slow_call_does_not_hold_the_others(start_runtime: StartRuntime, fake_provider: FakeProvider) -> None:
    runtime = start_runtime()
    slow_answer: list[dict[str, Any]] = []
    with runtime.client() as client:
        ready(client)
        slow = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "slow", "arguments": {"text": "z"}},
        }
        with runtime.client() as other:
            thread = threading.Thread(target=lambda: slow_answer.append(other.mcp_call("fake", slow)))
            thread.start()
            poll_until(lambda: any(m.get("params", {}).get("name") == "slow" for s in fake_provider.mcp_servers.values()
                                   for m in s.received))  # fmt: skip
            assert client.mcp_call("fake", ADD)["result"]["content"][0]["text"] == "5"
            assert not slow_answer
            for fake_server in fake_provider.mcp_servers.values():
                fake_server.release.set()
            thread.join(30)
    assert slow_answer[0]["result"]["content"][0]["text"] == "z"


def test_a_server_whose_process_is_killed_is_restarted_and_works_again(
    start_runtime: StartRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = start_runtime()
    with runtime.client() as client, runtime.subscribe(("mcp",)) as events:
        first = ready(client)
        client.exec_kill(first.workspace_id or "", first.process_id or "", "KILL")
        failed = wait_for_event(events, lambda e: e["type"] == "mcp.state" and e["state"] == "failed")
        assert "the server process ended (exit code 137)" in failed["error"]
        again = ready(client, restarts=1)
        assert (again.workspace_id, again.restarts) == (first.workspace_id, 1)  # the same workspace
        assert again.process_id != first.process_id
        assert client.mcp_call("fake", ADD)["result"]["content"][0]["text"] == "5"
    assert any(FAILED_TO_START in r.getMessage() and "fake" in r.getMessage() for r in caplog.records)


def test_a_server_that_cannot_start_is_failed_with_the_reason_and_leaves_nothing(
    start_runtime: StartRuntime, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake_provider.fail_create = ProviderUnavailable("image fake/missing:1 is not present")
    caplog.set_level(logging.ERROR)
    runtime = start_runtime([{**FAKE, "image": "fake/missing:1"}])
    with runtime.client() as client:
        poll_until(lambda: server(client).state == "failed" and server(client).restarts >= 1)
        status = server(client)
        assert "image fake/missing:1 is not present" in (status.error or "")
        assert status.retry_at is not None
        poll_until(lambda: client.list() == [])  # each failed try's record is destroyed
        with pytest.raises(ProviderUnavailable, match="MCP server fake is failed") as caught:
            client.mcp_call("fake", ADD)
        assert caught.value.retryable
    logged = [r.getMessage() for r in caplog.records if FAILED_TO_START in r.getMessage()]
    assert logged and "fake: " in logged[0] and "image fake/missing:1 is not present" in logged[0]
    assert fake_provider.workspaces == {}


def test_a_restarted_runtime_reuses_the_servers_workspace(start_runtime: StartRuntime) -> None:
    first = start_runtime()
    with first.client() as client:
        workspace_id = ready(client).workspace_id
    first.stop()
    second = start_runtime()
    with second.client() as client:
        assert ready(client).workspace_id == workspace_id
        assert client.mcp_call("fake", ADD)["id"] == 1
        assert [record.id for record in client.list()] == [workspace_id]


def test_the_workspace_of_a_server_no_longer_configured_is_destroyed(start_runtime: StartRuntime) -> None:
    first = start_runtime()
    with first.client() as client:
        workspace_id = ready(client).workspace_id or ""
    first.stop()
    second = start_runtime([{**FAKE, "name": "other"}])
    with second.client() as client:
        ready(client, "other")
        poll_until(lambda: client.get(workspace_id).state == "destroyed")


def test_server_notifications_and_state_changes_are_events(
    start_runtime: StartRuntime, fake_provider: FakeProvider
) -> None:
    runtime = start_runtime()
    with runtime.subscribe(("mcp",)) as events, runtime.client() as client:
        changes = []
        while not changes or changes[-1][0] != "ready":
            event = wait_for_event(events, lambda e: e["type"] == "mcp.state")
            changes.append((event["state"], event["workspace_id"] is not None, event["restarts"]))
        # starting, then its workspace is known, then ready (a subscriber that joined late
        # may have missed the first of them)
        full = [("starting", False, 0), ("starting", True, 0), ("ready", True, 0)]
        assert changes == full[len(full) - len(changes) :]
        (key,) = fake_provider.mcp_servers
        fake_provider.processes[key].output("stdout", FakeMcpServer.notification("hello"))
        note = wait_for_event(events, lambda e: e["type"] == "mcp.notification")
        assert note["name"] == "fake"
        assert note["message"]["params"]["data"] == "hello"
        assert note["seq"] > event["seq"]
        assert client.mcp_list()[0].state == "ready"


def test_calls_are_refused_clearly(start_runtime: StartRuntime) -> None:
    runtime = start_runtime([FAKE, {**FAKE, "name": "idle", "auto_start": False}])
    with runtime.client() as client:
        ready(client)
        assert server(client, "idle").state == "stopped"
        with pytest.raises(NotFound, match="MCP server 'nope' does not exist"):
            client.mcp_call("nope", ADD)
        with pytest.raises(ProviderUnavailable, match="auto_start is false"):
            client.mcp_call("idle", ADD)
        with pytest.raises(BadRequest, match=r"not a JSON-RPC 2\.0 request"):
            client.mcp_call("fake", {"id": 1, "method": "tools/list"})
        with pytest.raises(BadRequest, match="MCP server name"):
            client.mcp_call("bad name", ADD)


def test_a_runtime_without_servers_lists_none(start_runtime: StartRuntime) -> None:
    with start_runtime([]).client() as client:
        assert client.mcp_list() == []
        with pytest.raises(NotFound, match="none is configured"):
            client.mcp_call("fake", ADD)


def test_a_call_retried_with_the_same_id_reaches_the_server_once(
    start_runtime: StartRuntime, fake_provider: FakeProvider
) -> None:
    with start_runtime().client() as client:
        ready(client)
        args = McpCallArgs(name="fake", message=ADD)
        first = client.request("mcp_call", args, request_id="call-1")
        again = client.request("mcp_call", args, request_id="call-1")  # e.g. after a lost reply
    assert bytes(first) == bytes(again)
    (fake_server,) = fake_provider.mcp_servers.values()
    assert [m["method"] for m in fake_server.received].count("tools/call") == 1
