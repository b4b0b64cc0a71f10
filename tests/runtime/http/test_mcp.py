"""MCP's streamable HTTP transport at /mcp/{name}, over a real server, on the in-memory provider and MCP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from runtime.app import Runtime
from runtime.http.mcp import INVALID_REQUEST, PARSE_ERROR, SERVER_ERROR
from tests.conftest import write_mcp_config
from tests.fake_mcp import FakeMcpServer
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event
from tests.runtime.http.conftest import API, StartRuntime, client, error_of

WRONG_TOKEN = "wrong-token-0123456789abcdef"
FAKE = {"name": "fake", "image": "fake/mcp:1", "command": ["fake-mcp"]}
OTHER = {"name": "other", "image": "fake/mcp:1", "command": ["fake-mcp"]}
ADD = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": "init-1",
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
RESPONSE = {"jsonrpc": "2.0", "id": 3, "result": {}}
SSE = {"accept": "text/event-stream"}


def start_with_servers(
    start_runtime: StartRuntime, tmp_path: Path, provider: FakeProvider, servers: list[dict[str, Any]]
) -> Runtime:
    config = write_mcp_config(tmp_path / "mcp.toml", servers)
    return start_runtime(provider=provider, mcp_config=config)


def states(http: httpx.Client) -> dict[str, str]:
    response = http.get(f"{API}/mcp")
    assert response.status_code == 200, response.text
    return {server["name"]: server["state"] for server in response.json()}


@pytest.fixture
def fake_provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def mcp_runtime(start_runtime: StartRuntime, tmp_path: Path, fake_provider: FakeProvider) -> Runtime:
    """A runtime with two ready MCP servers, ``fake`` and ``other``, on the in-memory provider."""
    runtime = start_with_servers(start_runtime, tmp_path, fake_provider, [FAKE, OTHER])
    with client(runtime) as http:
        poll_until(lambda: states(http) == {"fake": "ready", "other": "ready"})
    return runtime


@pytest.fixture
def mcp(mcp_runtime: Runtime) -> Iterator[httpx.Client]:
    with client(mcp_runtime) as made:
        yield made


def process_of(runtime: Runtime, server: str) -> str:
    """The process id of the MCP server ``server`` (the fake provider's key for it)."""
    with runtime.client() as wire:
        process_id = next(status.process_id for status in wire.mcp_list() if status.name == server)
    assert process_id is not None
    return process_id


def notify(runtime: Runtime, provider: FakeProvider, server: str, text: str) -> int:
    """Have the MCP server ``server`` send a notification; return its event's seq once it is recorded."""
    process_id = process_of(runtime, server)
    with runtime.subscribe(("mcp",)) as events:
        provider.processes[process_id].output("stdout", FakeMcpServer.notification(text))
        event = wait_for_event(
            events, lambda e: e["type"] == "mcp.notification" and e["message"]["params"]["data"] == text
        )
    return int(event["seq"])


class McpStream:
    """An MCP notification stream read event by event: each one's field lines, and its ``data`` decoded.

    A keep-alive comment fails the test: the server sends one only after a quiet 15 s, so
    whatever was expected did not come.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next(self) -> tuple[list[str], dict[str, Any]]:
        fields: list[str] = []
        for line in self._lines:
            if line.startswith(":"):
                raise AssertionError(f"the stream went quiet ({line!r}) before the next event")
            if line:
                fields.append(line)
                continue
            data = [field.removeprefix("data: ") for field in fields if field.startswith("data: ")]
            if data:
                decoded: dict[str, Any] = msgspec.json.decode(data[0])
                return fields, decoded
            fields = []
        raise AssertionError("the stream ended")


# ---------------------------------------------------------------------- mcp_list as REST


def test_mcp_list_answers_an_empty_list_in_a_runtime_without_mcp_servers(http: httpx.Client) -> None:
    response = http.get(f"{API}/mcp")
    assert (response.status_code, response.json()) == (200, [])


def test_mcp_list_answers_every_configured_server_with_its_status(mcp: httpx.Client) -> None:
    servers = mcp.get(f"{API}/mcp").json()
    assert [server["name"] for server in servers] == ["fake", "other"]
    assert set(servers[0]) == {
        "name", "state", "workspace_id", "restarts", "error", "image", "transport", "process_id", "retry_at"
    }  # fmt: skip
    assert (servers[0]["state"], servers[0]["image"], servers[0]["transport"]) == ("ready", "fake/mcp:1", "stdio")
    assert servers[0]["workspace_id"].startswith("ws_")


def test_mcp_list_needs_the_token(runtime: Runtime) -> None:
    with client(runtime, token="") as anonymous:
        response = anonymous.get(f"{API}/mcp")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


# ---------------------------------------------------------------------- POST: requests


def test_initialize_is_answered_from_the_runtimes_handshake_with_a_fresh_session_id_each_time(
    mcp: httpx.Client,
) -> None:
    first = mcp.post(f"{API}/mcp/fake", json=INITIALIZE)
    second = mcp.post(f"{API}/mcp/fake", json={**INITIALIZE, "id": 2})
    for response in (first, second):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["result"]["serverInfo"] == {"name": "fake"}
    assert (first.json()["id"], second.json()["id"]) == ("init-1", 2)
    sessions = {first.headers["mcp-session-id"], second.headers["mcp-session-id"]}
    assert len(sessions) == 2
    assert all(len(session) >= 20 for session in sessions)


@pytest.mark.parametrize("session", [None, "a-session-this-runtime-never-gave"], ids=["without", "unknown"])
def test_a_request_is_answered_with_the_servers_response_with_or_without_a_session_id(
    mcp: httpx.Client, session: str | None
) -> None:
    headers = {"mcp-session-id": session} if session else {}
    response = mcp.post(f"{API}/mcp/fake", json=ADD, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "5"}]}}
    assert "mcp-session-id" not in response.headers


def test_a_servers_error_response_is_answered_as_it_is(mcp: httpx.Client) -> None:
    response = mcp.post(f"{API}/mcp/fake", json={"jsonrpc": "2.0", "id": 1, "method": "no/such"})
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no method no/such"}}


def test_a_server_still_starting_answers_the_request_with_a_retryable_jsonrpc_error(
    start_runtime: StartRuntime, tmp_path: Path
) -> None:
    gate = threading.Event()  # holds the server's workspace in creation
    runtime = start_with_servers(start_runtime, tmp_path, FakeProvider(boot_gate=gate), [FAKE])
    try:
        with client(runtime) as http:
            poll_until(lambda: states(http) == {"fake": "starting"})
            response = http.post(f"{API}/mcp/fake", json=ADD)
            notified = http.post(f"{API}/mcp/fake", json={"jsonrpc": "2.0", "method": "notifications/progress"})
    finally:
        gate.set()
    assert response.status_code == 200
    answer = response.json()
    assert (answer["jsonrpc"], answer["id"], answer["error"]["code"]) == ("2.0", 7, SERVER_ERROR)
    assert answer["error"]["data"] == {"code": "provider_unavailable", "retryable": True}
    assert "starting" in answer["error"]["message"]
    # A notification has no response to carry the error: the status says it, as for the rest of the API.
    assert (notified.status_code, error_of(notified)["code"], notified.headers["retry-after"]) == (
        503,
        "provider_unavailable",
        "5",
    )


def test_a_cancel_reaches_only_the_request_of_its_own_session(
    mcp_runtime: Runtime, mcp: httpx.Client, fake_provider: FakeProvider
) -> None:
    server = fake_provider.mcp_servers[process_of(mcp_runtime, "fake")]
    slow = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "arguments": {"text": "z"}}}
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    answers: list[httpx.Response] = []

    def call_slow() -> None:
        with client(mcp_runtime) as own:
            answers.append(own.post(f"{API}/mcp/fake", json=slow, headers={"mcp-session-id": "a"}))

    caller = threading.Thread(target=call_slow)
    caller.start()
    try:
        poll_until(lambda: any(m.get("params", {}).get("name") == "slow" for m in server.received))
        for session in ("b", "a"):  # both number their requests from 1: only a's is a's
            assert mcp.post(f"{API}/mcp/fake", json=cancel, headers={"mcp-session-id": session}).status_code == 202
        # Forwarded after anything sent before it: once it is answered, both cancels had their chance.
        assert mcp.post(f"{API}/mcp/fake", json=ADD).status_code == 200
    finally:
        server.release.set()
        caller.join(30)
    (sent,) = [m for m in server.received if m.get("params", {}).get("name") == "slow"]
    cancels = [m for m in server.received if m.get("method") == "notifications/cancelled"]
    assert [m["params"]["requestId"] for m in cancels] == [sent["id"]]
    assert answers[0].json() == {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "z"}]}}


# ---------------------------------------------------------------------- POST: notifications, responses


def test_a_notification_is_forwarded_and_accepted_with_202_and_no_body(
    mcp: httpx.Client, fake_provider: FakeProvider
) -> None:
    message = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    response = mcp.post(f"{API}/mcp/fake", json=message)
    assert (response.status_code, response.content, response.headers.get("content-type")) == (202, b"", None)
    # Forwarded before the answer: a request sent after it reaches the server after it.
    assert mcp.post(f"{API}/mcp/fake", json=ADD).status_code == 200
    received = [m for server in fake_provider.mcp_servers.values() for m in server.received]
    assert message in received


def test_the_callers_initialized_notification_is_accepted_and_goes_no_further(
    mcp: httpx.Client, fake_provider: FakeProvider
) -> None:
    response = mcp.post(f"{API}/mcp/fake", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert response.status_code == 202
    for server in fake_provider.mcp_servers.values():  # only the runtime's own, once per server
        assert [m["method"] for m in server.received if m.get("method") == "notifications/initialized"] == [
            "notifications/initialized"
        ]


def test_a_response_from_the_client_is_accepted_with_202(mcp: httpx.Client) -> None:
    response = mcp.post(f"{API}/mcp/fake", json=RESPONSE)
    assert (response.status_code, response.content) == (202, b"")


# ---------------------------------------------------------------------- POST: what is refused


@pytest.mark.parametrize(
    "body", [b'{"jsonrpc": "2.0", "id": 1,', b"[" * 100_000 + b"]" * 100_000], ids=["cut", "nested-too-deeply"]
)
def test_a_body_that_is_not_json_answers_400_with_a_jsonrpc_parse_error(mcp: httpx.Client, body: bytes) -> None:
    response = mcp.post(f"{API}/mcp/fake", content=body)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["jsonrpc"], answer["id"], answer["error"]["code"]) == ("2.0", None, PARSE_ERROR)


def test_a_batch_answers_400(mcp: httpx.Client) -> None:
    response = mcp.post(f"{API}/mcp/fake", json=[ADD, {**ADD, "id": 8}])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == INVALID_REQUEST
    assert "batch" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("message", "answered_id"),
    [
        ({"id": 1, "method": "tools/list"}, 1),
        ({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "tools/list"}, None),
        ({"jsonrpc": "2.0", "id": None, "method": "tools/list"}, None),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, 1),
        ({"jsonrpc": "2.0", "id": 1}, 1),
        ("tools/list", None),
    ],
    ids=["no-jsonrpc", "jsonrpc-1.0", "bool-id", "null-id", "empty-method", "neither", "a-string"],
)
def test_a_message_that_is_not_jsonrpc_answers_400_with_an_invalid_request_error(
    mcp: httpx.Client, message: Any, answered_id: Any
) -> None:
    response = mcp.post(f"{API}/mcp/fake", json=message)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["id"], answer["error"]["code"]) == (answered_id, INVALID_REQUEST)


def test_an_unknown_server_answers_404(http: httpx.Client) -> None:
    for message in (ADD, {"jsonrpc": "2.0", "method": "notifications/progress"}, b"not json"):
        if isinstance(message, bytes):
            response = http.post(f"{API}/mcp/nowhere", content=message)
        else:
            response = http.post(f"{API}/mcp/nowhere", json=message)
        assert response.status_code == 404
        error = error_of(response)
        assert error["code"] == "not_found"
        assert error["message"].startswith("MCP server 'nowhere' does not exist")


def test_a_name_no_server_could_have_answers_404(mcp: httpx.Client) -> None:
    response = mcp.post(f"{API}/mcp/-not.a.name", json=ADD)
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


def test_a_server_named_like_a_workspace_route_is_still_an_mcp_server(http: httpx.Client) -> None:
    response = http.post(f"{API}/mcp/files", json=ADD)  # not write_file of a workspace "mcp"
    assert response.status_code == 404
    assert error_of(response)["message"].startswith("MCP server 'files' does not exist")


@pytest.mark.parametrize("token", ["", WRONG_TOKEN], ids=["none", "wrong"])
@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", ADD), ("POST", RESPONSE), ("POST", b"{"), ("POST", [ADD]), ("GET", None)],
    ids=["request", "response", "not-json", "batch", "stream"],
)
def test_no_or_a_wrong_token_answers_401_with_www_authenticate(
    mcp_runtime: Runtime, token: str, method: str, body: Any
) -> None:
    with client(mcp_runtime, token=token) as anonymous:
        if isinstance(body, bytes):
            response = anonymous.request(method, f"{API}/mcp/fake", content=body)
        else:
            response = anonymous.request(method, f"{API}/mcp/fake", json=body, headers=SSE)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == 'Bearer realm="agent-workspaces"'


def test_the_mcp_list_path_takes_only_get_and_says_each_allowed_method_once(http: httpx.Client) -> None:
    response = http.post(f"{API}/mcp", json={})
    assert (response.status_code, response.headers["allow"]) == (405, "GET, DELETE")


def test_delete_answers_405_since_sessions_are_never_terminated(mcp: httpx.Client) -> None:
    response = mcp.delete(f"{API}/mcp/fake", headers={"mcp-session-id": "s"})
    assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")
    assert error_of(response)["code"] == "bad_request"
    assert mcp.post(f"{API}/mcp/fake", json=ADD, headers={"mcp-session-id": "s"}).status_code == 200


# ---------------------------------------------------------------------- GET: the notification stream


def test_get_streams_the_servers_notifications_and_no_other_servers(
    mcp_runtime: Runtime, mcp: httpx.Client, fake_provider: FakeProvider
) -> None:
    with mcp.stream("GET", f"{API}/mcp/fake", headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        # The stream is subscribed before its headers are sent: nothing after this is missed.
        notify(mcp_runtime, fake_provider, "other", "not for this stream")
        seq = notify(mcp_runtime, fake_provider, "fake", "hello")
        fields, data = McpStream(response).next()
    assert fields[0] == f"id: {seq}"
    assert not any(field.startswith("event:") for field in fields)  # MCP clients read the default type only
    assert data == {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hello"}}


def test_last_event_id_replays_the_notifications_missed_then_goes_on_live(
    mcp_runtime: Runtime, mcp: httpx.Client, fake_provider: FakeProvider
) -> None:
    first = notify(mcp_runtime, fake_provider, "fake", "one")
    missed = notify(mcp_runtime, fake_provider, "fake", "two")
    notify(mcp_runtime, fake_provider, "other", "elsewhere")
    headers = {**SSE, "last-event-id": str(first)}
    with mcp.stream("GET", f"{API}/mcp/fake", headers=headers) as response:
        stream = McpStream(response)
        replayed = [stream.next()]
        live = notify(mcp_runtime, fake_provider, "fake", "three")
        replayed.append(stream.next())
    assert [(fields[0], data["params"]["data"]) for fields, data in replayed] == [
        (f"id: {missed}", "two"),
        (f"id: {live}", "three"),
    ]


def test_get_without_event_stream_in_accept_answers_406(mcp: httpx.Client) -> None:
    response = mcp.get(f"{API}/mcp/fake", headers={"accept": "application/json"})
    assert (response.status_code, error_of(response)["code"]) == (406, "bad_request")


def test_get_of_an_unknown_server_answers_404(mcp: httpx.Client) -> None:
    response = mcp.get(f"{API}/mcp/nowhere", headers=SSE)
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


def test_stopping_the_runtime_ends_an_open_notification_stream(mcp_runtime: Runtime, mcp: httpx.Client) -> None:
    with mcp.stream("GET", f"{API}/mcp/fake", headers=SSE) as response:
        assert response.status_code == 200
        mcp_runtime.stop()
        assert b"".join(response.iter_bytes()) == b""
