"""The Client against a bare ROUTER socket: what goes on the wire and what comes back."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
import zmq

from runtime.errors import (
    BadRequest,
    CapacityExceeded,
    Conflict,
    Disabled,
    InternalError,
    NotFound,
    ProviderUnavailable,
    Timeout,
    Unauthorized,
    WorkspaceError,
)
from runtime.messages import (
    CloneResult,
    ErrorBody,
    ErrorReply,
    ExecResult,
    FileData,
    GithubApp,
    GithubCredentialUsed,
    McpServerStatus,
    OkReply,
    OutputChunk,
    OutputPage,
    ProcessInfo,
    ProviderStatus,
    Snapshot,
    encode,
)
from runtime.wire import client as client_module
from runtime.wire.client import Client
from tests.runtime.messages.test_messages import record

TOKEN = "s" * 32
Answer = Callable[[dict[str, Any]], list[bytes]]


def ok(request: dict[str, Any], result: Any) -> bytes:
    return encode(OkReply(request["id"], result))


def error(request: dict[str, Any], code: str, message: str = "no", retryable: bool = False) -> bytes:
    return encode(ErrorReply(request["id"], ErrorBody(code, message, retryable)))


def scripted(*steps: Answer) -> Answer:
    """Answers the first requests with ``steps`` in turn, and any later one with an empty ok."""
    remaining = list(steps)

    def answer(request: dict[str, Any]) -> list[bytes]:
        return remaining.pop(0)(request) if remaining else [ok(request, {})]

    return answer


class FakeServer:
    """A ROUTER socket served by one thread: it records each request and sends what ``answer`` returns.

    ``answer`` gets the decoded request and returns the reply frames to send back (none: no reply).
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.answer: Answer = lambda request: [ok(request, {})]
        self.requests: queue.Queue[tuple[bytes, dict[str, Any]]] = queue.Queue()
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind("tcp://127.0.0.1:*")
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-router")
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._socket.poll(20):
                    continue
                identity, frame = self._socket.recv_multipart()
                request = msgspec.msgpack.decode(frame)
                self.requests.put((identity, request))
                for reply in self.answer(request):
                    self._socket.send_multipart([identity, reply])
        finally:
            self._socket.close()

    def next_request(self) -> tuple[bytes, dict[str, Any]]:
        """The identity and map of the next request the server received (waits up to 5 s)."""
        return self.requests.get(timeout=5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture
def server(context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[FakeServer]:
    fake = FakeServer(context)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def client(server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]) -> Iterator[Client]:
    with Client(server.endpoint, TOKEN, context=context, timeout_s=5) as c:
        yield c


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries pause a hundredth of a second instead of 0.2 s and more."""
    monkeypatch.setattr(client_module, "_RETRY_PAUSE_S", 0.01)


def process_info(**changes: Any) -> ProcessInfo:
    values: dict[str, Any] = {
        "process_id": "p1", "workspace_id": "ws_1", "topic": "exec.ws_1.p1", "cmd": ["cat"], "started_at": 1.0,
    }  # fmt: skip
    values.update(changes)
    return ProcessInfo(**values)


PROVIDER = ProviderStatus(name="gvisor", healthy=True, checked_at=1.0, detail="", runtime="runsc", workspaces=2)
RESULT = ExecResult(exit_code=3, stdout=b"out\x00", stderr=b"err", duration_ms=12.5, via="agent")
PAGE = OutputPage(process=process_info(), chunks=[OutputChunk(4, "stdout", b"x", 1.0)], truncated=3)

W: dict[str, Any] = {"workspace_id": "ws_1"}
WP: dict[str, Any] = {**W, "process_id": "p1"}

# Each op method: the op, the call, the args the request must carry, the result sent back, what the call returns.
APP = GithubApp(name="bot", app_id=1, installation_id=2, created_at=5.0)
USED = GithubCredentialUsed(seq=3, ts=4.0, app="bot", workspace_id="ws_1", repo="https://x/y.git", outcome="ok")
CLONED = CloneResult(path="/workspace/hello", commit="c0ffee")
MCP = McpServerStatus(name="demo", state="ready", workspace_id="ws_1", restarts=0, error=None)
RPC: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

OP_CASES: list[tuple[str, Callable[[Client], Any], dict[str, Any], Any, Any]] = [
    ("ping", lambda c: c.ping(), {}, {"version": "1"}, {"version": "1"}),
    ("providers", lambda c: c.providers(), {}, [PROVIDER], [PROVIDER]),
    ("create", lambda c: c.create(), {}, record(), record()),
    ("create", lambda c: c.create(
        provider="gvisor", image="busybox", cpu=2, memory="1G", disk=1 << 30, env={"A": "1"}, labels={"team": "a"},
        ttl_seconds=60, persistent=True,
    ), {
        "provider": "gvisor", "image": "busybox", "cpu": 2, "memory": "1G", "disk": 1 << 30, "env": {"A": "1"},
        "labels": {"team": "a"}, "ttl_seconds": 60, "persistent": True,
    }, record(), record()),
    ("create", lambda c: c.create(memory=512 << 20, persistent=False), {"memory": 512 << 20}, record(), record()),
    ("get", lambda c: c.get("ws_1"), W, record(), record()),
    ("list", lambda c: c.list(), {}, [record()], [record()]),
    ("list", lambda c: c.list(labels={"a": "b"}, state="ready"), {"labels": {"a": "b"}, "state": "ready"}, [], []),
    ("exec", lambda c: c.exec("ws_1", "echo hi"), {**W, "cmd": "echo hi"}, RESULT, RESULT),
    ("exec", lambda c: c.exec("ws_1", ["cat"], cwd="/tmp", env={"A": "1"}, stdin=b"in", timeout_s=5),
     {**W, "cmd": ["cat"], "cwd": "/tmp", "env": {"A": "1"}, "stdin": b"in", "timeout_s": 5}, RESULT, RESULT),
    ("exec", lambda c: c.spawn("ws_1", "make", stdin_open=True, timeout_s=9),
     {**W, "cmd": "make", "stream": True, "stdin_open": True, "timeout_s": 9}, process_info(), process_info()),
    ("exec", lambda c: c.spawn("ws_1", ["ls"]), {**W, "cmd": ["ls"], "stream": True}, process_info(), process_info()),
    ("exec_stdin", lambda c: c.exec_stdin("ws_1", "p1"), WP, {}, None),
    ("exec_stdin", lambda c: c.exec_stdin("ws_1", "p1", b"in", close=True), {**WP, "data": b"in", "close": True},
     {}, None),
    ("exec_kill", lambda c: c.exec_kill("ws_1", "p1"), WP, {}, None),  # TERM is the default: not sent
    ("exec_kill", lambda c: c.exec_kill("ws_1", "p1", 9), {**WP, "signal": 9}, {}, None),
    ("exec_list", lambda c: c.exec_list("ws_1"), W, [process_info()], [process_info()]),
    ("exec_output", lambda c: c.exec_output("ws_1", "p1", after=3), {**WP, "after": 3}, PAGE, PAGE),
    ("exec_output", lambda c: c.exec_output("ws_1", "p1"), WP, PAGE, PAGE),
    ("destroy", lambda c: c.destroy("ws_1"), W, {}, None),
    ("write_file", lambda c: c.write_file("ws_1", "bin/run", b"#!/bin/sh\n", mode=0o755),
     {**W, "path": "bin/run", "data": b"#!/bin/sh\n", "mode": 0o755}, {}, None),
    ("write_file", lambda c: c.write_file("ws_1", "a.txt", b""), {**W, "path": "a.txt", "data": b""}, {}, None),
    ("read_file", lambda c: c.read_file("ws_1", "a.txt"), {**W, "path": "a.txt"}, FileData(b"\xff"), b"\xff"),
    ("extend", lambda c: c.extend("ws_1", 90.5), {**W, "ttl_seconds": 90.5}, record(), record()),
    ("stats", lambda c: c.stats(), {}, {"workspaces": {"active": 1}}, {"workspaces": {"active": 1}}),
    ("snapshot", lambda c: c.snapshot(), {}, Snapshot(7, [record()]), Snapshot(7, [record()])),
    ("github_app_set", lambda c: c.github_app_set("bot", 1, 2, "PEM"),
     {"name": "bot", "app_id": 1, "installation_id": 2, "private_key": "PEM"}, APP, APP),
    ("github_app_list", lambda c: c.github_app_list(), {}, [APP], [APP]),
    ("github_app_delete", lambda c: c.github_app_delete("bot"), {"name": "bot"}, {}, None),
    ("github_key_rotate", lambda c: c.github_key_rotate("ab" * 32), {"key": "ab" * 32}, {"rotated": 2}, 2),
    ("github_audit", lambda c: c.github_audit(), {}, [USED], [USED]),
    ("github_audit", lambda c: c.github_audit(after=5, limit=7), {"after": 5, "limit": 7}, [], []),
    ("git_clone", lambda c: c.git_clone("ws_1", "octo/hello"), {**W, "repo": "octo/hello"}, CLONED, CLONED),
    ("git_clone", lambda c: c.git_clone("ws_1", "octo/hello", app="bot", ref="main", path="src", depth=1),
     {**W, "repo": "octo/hello", "app": "bot", "ref": "main", "path": "src", "depth": 1}, CLONED, CLONED),
    ("mcp_list", lambda c: c.mcp_list(), {}, [MCP], [MCP]),
    ("mcp_call", lambda c: c.mcp_call("demo", RPC), {"name": "demo", "message": RPC}, {**RPC, "result": {}},
     {**RPC, "result": {}}),
]  # fmt: skip


def test_every_op_method_is_covered() -> None:
    methods = {name for name in vars(Client) if not name.startswith("_")} - {"close", "request", "call", "subscribe"}
    called = {"spawn" if args.get("stream") else op for op, _, args, _, _ in OP_CASES}
    assert methods == called


@pytest.mark.parametrize(
    ("op", "call", "args", "result", "returned"), OP_CASES, ids=[f"{case[0]}-{i}" for i, case in enumerate(OP_CASES)]
)
def test_each_op_sends_exactly_the_args_given_and_decodes_its_result(
    server: FakeServer,
    client: Client,
    op: str,
    call: Callable[[Client], Any],
    args: dict[str, Any],
    result: Any,
    returned: Any,
) -> None:
    server.answer = lambda request: [ok(request, result)]
    assert call(client) == returned
    identity, request = server.next_request()
    assert identity == client.identity
    assert set(request) == {"id", "op", "token", "args"}
    assert (request["op"], request["token"], request["args"]) == (op, TOKEN, args)
    assert isinstance(request["id"], str) and request["id"]


def test_a_result_of_the_wrong_shape_is_refused_rather_than_returned(server: FakeServer, client: Client) -> None:
    server.answer = lambda request: [ok(request, {"id": "ws_1"})]
    with pytest.raises(msgspec.ValidationError, match="missing required field"):
        client.get("ws_1")


def test_each_request_gets_a_new_id_and_call_and_request_send_plain_maps(server: FakeServer, client: Client) -> None:
    server.answer = lambda request: [ok(request, {"echo": request["args"]})]
    assert client.call("stats", {"anything": [1, 2]}) == {"echo": {"anything": [1, 2]}}
    raw = client.request("ping", timeout_s=1)
    assert msgspec.msgpack.decode(raw) == {"echo": {}}
    assert client.call("ping", None) == {"echo": {}}
    ids = [server.next_request()[1]["id"] for _ in range(3)]
    assert len(set(ids)) == 3


def test_a_request_can_carry_an_id_of_the_callers_choosing(server: FakeServer, client: Client) -> None:
    client.request("ping", request_id="mine-1")
    assert server.next_request()[1]["id"] == "mine-1"


@pytest.mark.parametrize(
    ("code", "family", "retryable"),
    [
        ("bad_request", BadRequest, False),
        ("unauthorized", Unauthorized, False),
        ("disabled", Disabled, False),
        ("not_found", NotFound, False),
        ("conflict", Conflict, False),
        ("capacity", CapacityExceeded, True),
        ("provider_unavailable", ProviderUnavailable, True),
        ("timeout", Timeout, True),
        ("internal", InternalError, False),
        ("conflict", Conflict, True),  # the server's hint wins over the family's default
        ("capacity", CapacityExceeded, False),
    ],
)
def test_an_error_reply_raises_its_family_with_the_servers_message_and_retry_hint(
    server: FakeServer, client: Client, code: str, family: type[WorkspaceError], retryable: bool
) -> None:
    server.answer = lambda request: [error(request, code, f"it failed: {code}", retryable)]
    with pytest.raises(family) as caught:
        client.get("ws_1")
    assert type(caught.value) is family
    assert caught.value.message == f"it failed: {code}"
    assert caught.value.retryable is retryable


def test_an_unknown_error_code_raises_the_root_family(server: FakeServer, client: Client) -> None:
    server.answer = lambda request: [error(request, "teapot", "short and stout", True)]
    with pytest.raises(WorkspaceError) as caught:
        client.ping()
    assert type(caught.value) is WorkspaceError
    assert (caught.value.message, caught.value.retryable) == ("short and stout", True)


def test_a_failed_reply_without_an_error_body_is_an_internal_error(server: FakeServer, client: Client) -> None:
    server.answer = lambda request: [encode({"id": request["id"], "ok": False})]
    with pytest.raises(InternalError, match="malformed error reply"):
        client.ping()


def test_nothing_answering_is_a_timeout_naming_the_op_and_endpoint(server: FakeServer, client: Client) -> None:
    server.answer = lambda request: []
    with pytest.raises(Timeout) as caught:
        client.request("get", {"workspace_id": "ws_1"}, timeout_s=0.1)
    assert caught.value.message == f"no reply to get from {server.endpoint} within 0.1 s"
    assert caught.value.retryable is True
    assert server.next_request()[1]["op"] == "get"


def test_a_late_reply_to_a_request_that_timed_out_is_ignored(server: FakeServer, client: Client) -> None:
    server.answer = lambda request: []
    with pytest.raises(Timeout):
        client.request("get", {"workspace_id": "ws_1"}, timeout_s=0.1)
    _, first = server.next_request()
    # The late reply to the first request arrives just before the reply to the second.
    server.answer = lambda request: [ok(first, record(id="late")), ok(request, record(id="right"))]
    assert client.get("ws_2").id == "right"
    _, second = server.next_request()
    assert second["id"] != first["id"]


def test_an_exec_waits_for_its_timeout_plus_a_margin(
    server: FakeServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.answer = lambda request: []
    monkeypatch.setattr(client_module, "_EXEC_WAIT_MARGIN_S", 0.05)
    with pytest.raises(Timeout, match=r"no reply to exec .* within 0\.15 s"):
        client.exec("ws_1", "sleep 1", timeout_s=0.1)
    with pytest.raises(Timeout, match=r"within 0\.1 s"):
        client.exec("ws_1", "sleep 1", wait_s=0.1)  # wait_s is the client's own deadline


@pytest.mark.usefixtures("quick_retries")
def test_a_retry_reuses_the_request_id_and_identity_until_an_answer_comes(
    server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server.answer = scripted(
        lambda request: [],  # the first attempt times out
        lambda request: [error(request, "capacity", "full", True)],
        lambda request: [error(request, "provider_unavailable", "down", True)],
        lambda request: [ok(request, record())],
    )
    with Client(server.endpoint, TOKEN, context=context, timeout_s=0.2, retries=3) as retrying:
        assert retrying.get("ws_1") == record()
        attempts = [server.next_request() for _ in range(4)]
    assert {identity for identity, _ in attempts} == {retrying.identity}
    assert len({request["id"] for _, request in attempts}) == 1
    assert [request["args"] for _, request in attempts] == [{"workspace_id": "ws_1"}] * 4


@pytest.mark.usefixtures("quick_retries")
def test_retries_stop_at_the_first_error_that_is_not_retryable(
    server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server.answer = scripted(
        lambda request: [error(request, "capacity", "full", True)],
        lambda request: [error(request, "conflict", "wrong state", False)],
    )
    with Client(server.endpoint, TOKEN, context=context, timeout_s=2, retries=5) as retrying:
        with pytest.raises(Conflict, match="wrong state"):
            retrying.get("ws_1")
        assert retrying.ping() == {}
    ops = [server.next_request()[1]["op"] for _ in range(3)]
    assert ops == ["get", "get", "ping"]  # a third attempt would have come before the ping


@pytest.mark.usefixtures("quick_retries")
def test_when_retries_run_out_the_last_error_is_raised(
    server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server.answer = lambda request: [error(request, "capacity", "still full", True)]
    with Client(server.endpoint, TOKEN, context=context, timeout_s=2, retries=2) as retrying:
        with pytest.raises(CapacityExceeded, match="still full"):
            retrying.get("ws_1")
        server.answer = lambda request: [ok(request, {})]
        retrying.ping()
    requests = [server.next_request()[1] for _ in range(4)]
    assert [r["op"] for r in requests] == ["get", "get", "get", "ping"]
    assert len({r["id"] for r in requests[:3]}) == 1


@pytest.mark.usefixtures("quick_retries")
def test_a_request_that_never_gets_an_answer_is_sent_once_per_attempt_then_times_out(
    server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    server.answer = lambda request: []
    with Client(server.endpoint, TOKEN, context=context, timeout_s=0.1, retries=1) as retrying:
        with pytest.raises(Timeout):
            retrying.ping()
        server.answer = lambda request: [ok(request, {})]
        retrying.stats()
    requests = [server.next_request()[1] for _ in range(3)]
    assert [r["op"] for r in requests] == ["ping", "ping", "stats"]
    assert requests[0]["id"] == requests[1]["id"] != requests[2]["id"]


def test_a_given_identity_is_the_routing_id_of_every_request(
    server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    with Client(server.endpoint, TOKEN, context=context, timeout_s=5, identity=b"restarted-client") as named:
        named.ping()
        named.ping()
    assert [server.next_request()[0] for _ in range(2)] == [b"restarted-client"] * 2


def test_clients_get_distinct_random_identities(server: FakeServer, context: zmq.Context[zmq.Socket[bytes]]) -> None:
    with (
        Client(server.endpoint, TOKEN, context=context) as first,
        Client(server.endpoint, TOKEN, context=context) as second,
    ):
        assert first.identity != second.identity
        assert first.identity.startswith(b"client-")
