"""The HTTP API over a real server (uvicorn, in the runtime's process) on the fake provider."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest

from runtime.app import Runtime
from runtime.errors import ConfigError
from runtime.http.openapi import document
from runtime.http.responses import RETRY_AFTER_S
from runtime.messages import WorkspaceSpec
from runtime.version import __version__
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.runtime.http.conftest import API, EventStream, StartRuntime, client, error_of, open_stream

WRONG_TOKEN = "wrong-token-0123456789abcdef"


@dataclass
class HeldProvider(FakeProvider):
    """A fake provider whose creates wait for ``boot_gate``; ``creating`` is set when one starts."""

    creating: threading.Event = field(default_factory=threading.Event)

    def create(self, spec: WorkspaceSpec) -> str:
        self.creating.set()
        return super().create(spec)


def create(http: httpx.Client, **args: Any) -> dict[str, Any]:
    response = http.post(API, json=args)
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record


# ---------------------------------------------------------------------- health, readiness, documents


def test_healthz_says_live_with_the_version_and_needs_no_token(runtime: Runtime) -> None:
    with client(runtime, token="") as anonymous:
        response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"live": True, "version": __version__}


def test_readyz_says_ready_once_started_and_needs_no_token(runtime: Runtime) -> None:
    with client(runtime, token="") as anonymous:
        response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/api/v1/openapi.json", "application/json"),
        ("/", "text/html; charset=utf-8"),
        ("/api/v1/docs", "text/html; charset=utf-8"),
        ("/static/admin.js", "text/javascript; charset=utf-8"),
        ("/static/admin.css", "text/css; charset=utf-8"),
    ],
)
def test_the_documents_and_the_admin_page_are_served_with_their_content_type(
    http: httpx.Client, path: str, kind: str
) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == kind
    assert response.content


def test_the_openapi_document_served_is_the_generated_one(http: httpx.Client) -> None:
    assert http.get("/api/v1/openapi.json").json() == msgspec.json.decode(msgspec.json.encode(document()))


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize("token", ["", WRONG_TOKEN], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("path", [f"{API}/providers", f"{API}/events", f"{API}/ws_x/exec/proc_x/events"])
def test_a_request_without_the_token_is_401_with_a_bearer_challenge(runtime: Runtime, token: str, path: str) -> None:
    with client(runtime, token=token) as stranger:
        response = stranger.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert error_of(response)["code"] == "unauthorized"


def test_an_unknown_path_is_404_not_found(http: httpx.Client) -> None:
    response = http.get("/api/v1/agent/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_unknown_workspace_is_404_not_found(http: httpx.Client) -> None:
    response = http.get(f"{API}/ws_000000000000")
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "not_found",
        "message": "workspace ws_000000000000 does not exist",
        "retryable": False,
    }


def test_a_method_the_path_does_not_take_is_405_with_the_allowed_ones(http: httpx.Client) -> None:
    response = http.request("PATCH", API)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert error_of(response)["code"] == "bad_request"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b'{"labels": ' * 100_000 + b"1" + b"}" * 100_000, b'{"image": "\xc3\x28"}'],
    ids=["not-json", "array", "string", "nested-too-deeply", "not-utf8"],
)
def test_a_body_that_is_not_a_json_object_is_400(http: httpx.Client, body: bytes) -> None:
    response = http.post(API, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    assert http.get(API).json() == []


def test_a_rule_broken_in_a_json_body_answers_422_with_the_rules_words(http: httpx.Client) -> None:
    response = http.post(API, json={"cpu": -1})
    assert response.status_code == 422
    assert error_of(response) == {
        "code": "bad_request",
        "message": "invalid args for create: cpu=-1 is out of range: expected 0.01 to 1024 cores",
        "retryable": False,
    }
    assert http.get(API).json() == []


def test_a_rule_only_the_runtime_checks_is_422_too(http: httpx.Client) -> None:
    response = http.post(API, json={"env": {"1BAD": "x"}})
    assert response.status_code == 422
    assert "env name '1BAD' is not valid" in error_of(response)["message"]


def test_a_number_in_the_query_that_is_not_ascii_digits_answers_422(http: httpx.Client) -> None:
    record = create(http)
    response = http.get(f"{API}/{record['id']}/exec/proc_1/output", params={"after": "²"})
    assert response.status_code == 422
    assert error_of(response)["message"].startswith("invalid args for exec_output: ")


def test_an_unknown_event_topic_is_refused_as_a_bad_request(http: httpx.Client) -> None:
    response = http.get(f"{API}/events", params={"topics": "workspace,weather"})
    assert response.status_code in (400, 422)
    assert "weather" in error_of(response)["message"]


# ---------------------------------------------------------------------- the ops


def test_a_created_workspace_can_be_read_listed_extended_used_and_destroyed(http: httpx.Client) -> None:
    record = create(http, labels={"team": "a"}, ttl_seconds=600)
    workspace = f"{API}/{record['id']}"
    assert record["state"] == "ready"
    assert http.get(workspace).json() == record
    assert [found["id"] for found in http.get(API, params={"label": "team=a"}).json()] == [record["id"]]
    assert http.get(API, params={"label": "team=b"}).json() == []

    extended = http.post(f"{workspace}/extend", json={"ttl_seconds": 7200})
    assert extended.status_code == 200
    assert extended.json()["expires_at"] > record["expires_at"]

    ran = http.post(f"{workspace}/exec", json={"cmd": ["echo", "hi"]})
    assert ran.status_code == 200
    assert msgspec.json.decode(ran.content, type=dict[str, Any])["stdout"] == "ZWNobyBoaQ=="  # base64 "echo hi"

    wrote = http.put(f"{workspace}/files", params={"path": "a.txt", "mode": "644"}, content=b"\x00bytes\xff")
    assert wrote.status_code == 200
    read = http.get(f"{workspace}/files", params={"path": "a.txt"})
    assert (read.status_code, read.headers["content-type"], read.content) == (
        200,
        "application/octet-stream",
        b"\x00bytes\xff",
    )

    assert http.delete(workspace).status_code == 200
    assert http.get(workspace).json()["state"] == "destroyed"
    assert http.delete(workspace).status_code == 200  # idempotent


def test_a_streamed_processs_events_are_its_output_then_its_exit_and_the_stream_ends(http: httpx.Client) -> None:
    record = create(http)
    started = http.post(f"{API}/{record['id']}/exec", json={"cmd": ["make", "all"], "stream": True})
    assert started.status_code == 200
    process = started.json()["process_id"]
    with http.stream("GET", f"{API}/{record['id']}/exec/{process}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = EventStream(response).rest()
    assert [event["type"] for event in events] == ["exec.output", "exec.exit"]
    assert events[0]["data"] == "bWFrZSBhbGw="  # base64 "make all": the fake writes its argv
    assert events[1]["exit_code"] == 0


def test_the_events_of_an_unknown_process_are_404_before_any_stream(http: httpx.Client) -> None:
    record = create(http)
    response = http.get(f"{API}/{record['id']}/exec/proc_nope/events")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_create_retried_with_its_idempotency_key_answers_the_same_workspace(
    start_runtime: StartRuntime,
) -> None:
    provider = FakeProvider()
    runtime = start_runtime(provider)
    with client(runtime) as http:
        first = http.post(API, json={}, headers={"Idempotency-Key": "create-1"})
        again = http.post(API, json={}, headers={"Idempotency-Key": "create-1"})
        other = http.post(API, json={}, headers={"Idempotency-Key": "create-2"})
        assert (first.status_code, again.status_code, other.status_code) == (201, 201, 201)
        assert again.json() == first.json()
        assert other.json()["id"] != first.json()["id"]
        assert sorted(found["id"] for found in http.get(API).json()) == sorted([first.json()["id"], other.json()["id"]])
    assert provider.created == 2


def raw_create(address: str, token: str, key: str) -> socket.socket:
    """Send a whole create request on a socket of its own; the reply is read by ``raw_reply``."""
    host, _, port = address.rpartition(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(
        (
            f"POST {API} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n"
            f"Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\n{}"
        ).encode()
    )
    return connection


def raw_reply(connection: socket.socket) -> tuple[int, dict[str, Any]]:
    with connection:
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), msgspec.json.decode(body)


def test_two_concurrent_creates_with_one_idempotency_key_create_exactly_one_workspace(
    start_runtime: StartRuntime,
) -> None:
    provider = HeldProvider(boot_gate=threading.Event())
    runtime = start_runtime(provider)
    answers: dict[str, httpx.Response] = {}

    def first() -> None:
        with client(runtime) as http:
            answers["first"] = http.post(API, json={}, headers={"Idempotency-Key": "same"})

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert provider.creating.wait(10), "the first create never reached the provider"
        # The first create is held in the provider: the second is sent while it is in flight.
        second = raw_create(runtime.http_address, runtime.token, "same")
    finally:
        assert provider.boot_gate is not None
        provider.boot_gate.set()
        thread.join(30)
    assert not thread.is_alive()
    status, record = raw_reply(second)
    assert (answers["first"].status_code, status) == (201, 201)
    assert record == answers["first"].json()
    with client(runtime) as http:
        assert [found["id"] for found in http.get(API).json()] == [record["id"]]
    assert provider.created == 1


def test_a_create_beyond_the_capacity_is_429_with_retry_after(start_runtime: StartRuntime) -> None:
    runtime = start_runtime(max_concurrent=1)
    with client(runtime) as http:
        create(http)
        response = http.post(API, json={})
    assert response.status_code == 429
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    error = error_of(response)
    assert (error["code"], error["retryable"]) == ("capacity", True)


def test_a_disabled_runtime_answers_503_disabled_yet_says_it_is_ready(start_runtime: StartRuntime) -> None:
    runtime = start_runtime(enabled=False)
    with client(runtime) as http:
        refused = http.get(f"{API}/providers")
        ready = http.get("/readyz")
    assert refused.status_code == 503
    assert error_of(refused) == {
        "code": "disabled",
        "message": "agent workspaces are disabled: set ENABLE_AGENT_WORKSPACES=true and restart",
        "retryable": False,
    }
    assert "retry-after" not in refused.headers  # disabled is final until a restart
    # /readyz asks `ping`, and the Router answers ping with ready=True when the master switch
    # is off: such a runtime is done starting and serves all it ever will (ping), so it is ready.
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_a_taken_http_address_fails_the_start_with_config_error_and_leaves_nothing_running(
    make_settings: MakeSettings, start_runtime: StartRuntime
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        threads = set(threading.enumerate())
        runtime = Runtime(make_settings(http_addr=f"127.0.0.1:{port}"), providers={"gvisor": FakeProvider()})
        with pytest.raises(ConfigError, match="WORKSPACE_HTTP_ADDR"):
            runtime.start()
        assert set(threading.enumerate()) - threads == set()
    # The state log and the sockets were released: a runtime starts on the same state directory.
    again = start_runtime()
    with client(again) as http:
        assert http.get("/healthz").status_code == 200


def test_no_log_record_carries_the_token_or_anything_else_a_request_carried(
    start_runtime: StartRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = start_runtime()
    secrets = [runtime.token, WRONG_TOKEN, "idem-key-7f3a9c", "label-value-5e1d"]
    with client(runtime) as http:
        record = create(http, labels={"team": "label-value-5e1d"})
        assert http.post(API, json={}, headers={"Idempotency-Key": "idem-key-7f3a9c"}).status_code == 201
        assert http.get(f"{API}/{record['id']}").status_code == 200
        assert http.post(API, json={"cpu": -1}).status_code == 422
        with http.stream("GET", f"{API}/events", headers={"Last-Event-ID": "0"}) as response:
            assert EventStream(response).next() is not None
    with client(runtime, token=WRONG_TOKEN) as stranger:
        assert stranger.get(f"{API}/providers").status_code == 401
        assert stranger.get(f"{API}/events").status_code == 401
    runtime.stop()
    assert any("HTTP API" in record.getMessage() for record in caplog.records), "the log was not captured"
    for logged in caplog.records:
        text = " ".join([logged.getMessage(), repr(logged.args), logged.exc_text or "", str(logged.exc_info or "")])
        assert not [secret for secret in secrets if secret in text], logged


def test_stop_returns_while_an_event_stream_client_is_still_connected(
    start_runtime: StartRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    runtime = start_runtime()
    thread, outcome = open_stream(f"http://{runtime.http_address}", runtime.token)
    runtime.stop()
    thread.join(10)
    assert not thread.is_alive(), "the client's stream did not end"
    assert outcome.get("ended") is True, outcome  # the server finished the response cleanly
    # The stream was ended, not cancelled by uvicorn once its graceful shutdown ran out (it logs an error then).
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_the_event_stream_from_last_event_id_zero_replays_the_state_log(http: httpx.Client) -> None:
    record = create(http)
    with http.stream("GET", f"{API}/events", headers={"Last-Event-ID": "0"}) as response:
        assert response.status_code == 200
        stream = EventStream(response)
        states: list[str] = []
        seqs: list[int] = []
        for _ in range(100):
            event = stream.next()
            assert event is not None
            seqs.append(event["seq"])
            if event.get("workspace_id") == record["id"] and event["type"] == "workspace.state":
                states.append(event["state"])
            if "ready" in states:
                break
    assert states == ["creating", "ready"]
    assert seqs == sorted(set(seqs))
    assert seqs[0] == 1
