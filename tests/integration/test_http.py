"""The HTTP API on a real runtime on real Docker (gVisor): the seed's Health API, REST, SSE."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from runtime.app import Runtime
from tests.conftest import MakeDockerRuntime

pytestmark = pytest.mark.docker

API = "/api/v1/agent/workspaces"


@pytest.fixture
def runtime(make_docker_runtime: MakeDockerRuntime) -> Runtime:
    return make_docker_runtime(http_addr="127.0.0.1:0")


@pytest.fixture
def http(runtime: Runtime) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {runtime.token}"}
    with httpx.Client(base_url=f"http://{runtime.http_address}", headers=headers, timeout=120) as client:
        yield client


class EventStream:
    """A server-sent event stream read message by message (``id``, ``event``, ``data`` as JSON)."""

    def __init__(self, client: httpx.Client, path: str, last_event_id: int | None = None) -> None:
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self._context = client.stream("GET", path, headers=headers, timeout=httpx.Timeout(120, read=60))
        self.response = self._context.__enter__()  # headers in: the stream is subscribed
        self._lines = self.response.iter_lines()

    def next(self) -> dict[str, Any]:
        """The next event (keep-alive comments skipped)."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if "data" in fields:
                    event = msgspec.json.decode(fields["data"])
                    assert fields["id"] == str(event["seq"])
                    assert fields["event"] == event["type"]
                    return event
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        raise AssertionError("the stream ended")

    def until(self, last: Any) -> list[dict[str, Any]]:
        """Every event up to and including the first one ``last`` accepts."""
        seen = []
        while True:
            seen.append(self.next())
            if last(seen[-1]):
                return seen

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def about(workspace_id: str, state: str) -> Any:
    return lambda event: event.get("workspace_id") == workspace_id and event.get("state") == state


# ---------------------------------------------------------------------- the seed's Health API


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_seeds_curl_line_answers_the_providers_json(runtime: Runtime) -> None:
    # The deployment guide's command, verbatim but for the address.
    line = (
        f'curl -H "Authorization: Bearer $TOKEN" \\\n  http://{runtime.http_address}/api/v1/agent/workspaces/providers'
    )
    done = subprocess.run(
        ["bash", "-c", f"set -e; out=$({line}); printf '%s' \"$out\""],
        env={**os.environ, "TOKEN": runtime.token},
        capture_output=True,
        check=True,
        timeout=60,
    )
    providers = msgspec.json.decode(done.stdout)
    assert [provider["name"] for provider in providers] == ["gvisor"]
    assert providers[0]["healthy"] is True
    assert set(providers[0]) >= {"name", "healthy", "checked_at", "detail", "runtime", "workspaces"}


def test_no_token_or_a_wrong_one_answers_401_with_a_bearer_challenge(runtime: Runtime) -> None:
    url = f"http://{runtime.http_address}{API}/providers"
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": runtime.token}):
        answer = httpx.get(url, headers=headers, timeout=30)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.json()["error"]["retryable"] is False


def test_health_and_readiness_need_no_token(runtime: Runtime) -> None:
    base = f"http://{runtime.http_address}"
    assert httpx.get(f"{base}/healthz", timeout=30).json()["live"] is True
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


# ---------------------------------------------------------------------- REST


def test_create_exec_write_read_and_destroy_through_rest(http: httpx.Client) -> None:
    created = http.post(API, json={"labels": {"test": "rest"}, "memory": "512M"})
    assert created.status_code == 201, created.text
    record = created.json()
    workspace_id = record["id"]
    assert (record["state"], record["runtime"], record["memory_bytes"]) == ("ready", "runsc", 512 << 20)
    try:
        ran = http.post(f"{API}/{workspace_id}/exec", json={"cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
        assert ran.status_code == 200, ran.text
        result = ran.json()
        assert result["exit_code"] == 3
        assert base64.b64decode(result["stdout"]) == b"out\n"
        assert base64.b64decode(result["stderr"]) == b"err\n"

        payload = bytes(range(256)) * 64
        written = http.put(f"{API}/{workspace_id}/files", params={"path": "dir/data.bin", "mode": "640"},
                           content=payload)  # fmt: skip
        assert (written.status_code, written.json()) == (200, {})
        read = http.get(f"{API}/{workspace_id}/files", params={"path": "dir/data.bin"})
        assert read.status_code == 200
        assert read.headers["content-type"] == "application/octet-stream"
        assert read.content == payload
        mode = http.post(f"{API}/{workspace_id}/exec", json={"cmd": "stat -c %a /workspace/dir/data.bin"}).json()
        assert base64.b64decode(mode["stdout"]) == b"640\n"

        outside = http.get(f"{API}/{workspace_id}/files", params={"path": "../etc/passwd"})
        assert outside.status_code == 422
        assert "under /workspace" in outside.json()["error"]["message"]

        listed = http.get(API, params={"label": "test=rest"}).json()
        assert [item["id"] for item in listed] == [workspace_id]
        assert http.get(API, params={"label": "test=other"}).json() == []
        assert http.get(f"{API}/{workspace_id}").json()["state"] == "ready"
    finally:
        destroyed = http.delete(f"{API}/{workspace_id}")
    assert (destroyed.status_code, destroyed.json()) == (200, {})
    assert http.get(f"{API}/{workspace_id}").json()["state"] == "destroyed"
    assert http.delete(f"{API}/{workspace_id}").status_code == 200  # idempotent
    gone = http.post(f"{API}/{workspace_id}/exec", json={"cmd": "true"})
    assert gone.status_code == 409
    assert gone.json()["error"]["code"] == "conflict"


def test_a_retried_post_with_the_same_idempotency_key_creates_one_workspace(http: httpx.Client) -> None:
    key = {"Idempotency-Key": "create-once-7f3a"}
    first = http.post(API, json={"labels": {"test": "idempotent"}}, headers=key)
    assert first.status_code == 201, first.text
    try:
        again = http.post(API, json={"labels": {"test": "idempotent"}}, headers=key)
        assert again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert [item["id"] for item in http.get(API, params={"label": "test=idempotent"}).json()] == [
            first.json()["id"]
        ]
        other = http.post(API, json={"labels": {"test": "idempotent"}}, headers={"Idempotency-Key": "another-key"})
        assert other.json()["id"] != first.json()["id"]
        http.delete(f"{API}/{other.json()['id']}")
    finally:
        http.delete(f"{API}/{first.json()['id']}")


def test_errors_carry_the_wire_code_message_and_retryable(http: httpx.Client) -> None:
    missing = http.get(f"{API}/ws_000000000000")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "workspace ws_000000000000 does not exist", "retryable": False}
    }
    for refused in ({"memory": "lots"}, {"cpu": 0}, {"colour": "blue"}):  # read, then refused by the runtime
        broken = http.post(API, json=refused)
        assert broken.status_code == 422, refused
        assert broken.json()["error"]["code"] == "bad_request"
        assert next(iter(refused)) in broken.json()["error"]["message"]
    unreadable = http.post(API, content=b"{not json", headers={"Content-Type": "application/json"})
    assert unreadable.status_code == 400
    assert unreadable.json()["error"]["code"] == "bad_request"


# ---------------------------------------------------------------------- server-sent events


def test_an_sse_client_sees_a_creates_events_in_order_and_resumes_without_a_gap(
    runtime: Runtime, http: httpx.Client
) -> None:
    stream = EventStream(http, f"{API}/events")  # every recorded topic: seq must go up by one
    try:
        workspace_id = http.post(API, json={}).json()["id"]
        seen = stream.until(about(workspace_id, "ready"))
    finally:
        stream.close()
    mine = [event["state"] for event in seen if event.get("workspace_id") == workspace_id]
    assert mine == ["creating", "ready"]
    last = seen[-1]["seq"]

    assert http.delete(f"{API}/{workspace_id}").status_code == 200  # while nobody listens
    resumed = EventStream(http, f"{API}/events", last_event_id=last)
    try:
        missed = resumed.until(about(workspace_id, "destroyed"))
    finally:
        resumed.close()
    seqs = [event["seq"] for event in missed]
    assert seqs == list(range(last + 1, last + 1 + len(seqs)))  # no gap, nothing twice
    assert [event["state"] for event in missed if event.get("workspace_id") == workspace_id] == [
        "stopping",
        "destroyed",
    ]
    recorded = [event.seq for event in runtime.events_after(last, 1000)]
    assert recorded[: len(seqs)] == seqs


def test_a_snapshot_and_the_stream_from_its_seq_give_the_whole_story(http: httpx.Client) -> None:
    first = http.post(API, json={}).json()["id"]
    snapshot = http.get(f"{API}/snapshot").json()
    assert first in [record["id"] for record in snapshot["workspaces"]]
    second = http.post(API, json={}).json()["id"]
    stream = EventStream(http, f"{API}/events?topics=workspace", last_event_id=snapshot["seq"])
    try:
        http.delete(f"{API}/{first}")
        after = stream.until(about(first, "destroyed"))
    finally:
        stream.close()
        http.delete(f"{API}/{second}")
    assert all(event["seq"] > snapshot["seq"] for event in after)
    assert {event["type"] for event in after} == {"workspace.state"}
    story = [(event["workspace_id"], event["state"]) for event in after]
    assert story == [(second, "creating"), (second, "ready"), (first, "stopping"), (first, "destroyed")]


def test_a_streamed_commands_output_comes_as_server_sent_events(http: httpx.Client) -> None:
    workspace_id = http.post(API, json={}).json()["id"]
    try:
        script = "for i in 1 2 3; do echo line $i; done; read reply; echo got $reply; exit 5"
        started = http.post(f"{API}/{workspace_id}/exec", json={"cmd": script, "stream": True, "stdin_open": True})
        assert started.status_code == 200, started.text
        process_id = started.json()["process_id"]
        path = f"{API}/{workspace_id}/exec/{process_id}/events"
        stream = EventStream(http, path)
        try:
            first = stream.until(lambda event: b"line 3" in base64.b64decode(event.get("data", "")))
            fed = http.post(f"{API}/{workspace_id}/exec/{process_id}/stdin", params={"close": "true"},
                            content=b"hello\n")  # fmt: skip
            assert fed.status_code == 200, fed.text
            rest = stream.until(lambda event: event["type"] == "exec.exit")
        finally:
            stream.close()
        output = b"".join(base64.b64decode(event["data"]) for event in first + rest if event["type"] == "exec.output")
        assert output == b"line 1\nline 2\nline 3\ngot hello\n"
        assert rest[-1]["exit_code"] == 5
        seqs = [event["seq"] for event in first + rest]
        assert seqs == sorted(set(seqs))

        # Reconnecting after the end replays what was kept after the given id, then the exit.
        again = EventStream(http, path, last_event_id=seqs[1])
        try:
            replayed = again.until(lambda event: event["type"] == "exec.exit")
        finally:
            again.close()
        assert [event["seq"] for event in replayed] == seqs[2:]
    finally:
        http.delete(f"{API}/{workspace_id}")
