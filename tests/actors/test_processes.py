"""Streamed processes through a real runtime (Gateway, actors, events) on a fake provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.messages import ProcessExited, ProcessOutput
from runtime.wire import Client
from runtime.wire.streams import Truncated, exec_topic_prefix, follow
from tests.fakes import FakeProvider


@pytest.fixture
def client(fake_runtime: Runtime) -> Iterator[Client]:
    with fake_runtime.client(timeout_s=10) as c:
        yield c


def test_a_streamed_process_is_fed_listed_and_followed_to_its_end(fake_runtime: Runtime, client: Client) -> None:
    record = client.create()
    with fake_runtime.subscribe((exec_topic_prefix(record.id),)) as events:
        process = client.spawn(record.id, ["cat"], stdin=b"a", stdin_open=True)
        assert process.running and process.topic == f"exec.{record.id}.{process.process_id}"
        assert [p.process_id for p in client.exec_list(record.id)] == [process.process_id]
        client.exec_stdin(record.id, process.process_id, b"b")
        client.exec_stdin(record.id, process.process_id, b"c", close=True)
        stream = list(follow(client, events, process, timeout_s=10))
    assert [(e.stream, e.data) for e in stream if isinstance(e, ProcessOutput)] == [
        ("stderr", b"cat"), ("stdout", b"a"), ("stdout", b"b"), ("stdout", b"c"),
    ]  # fmt: skip
    assert isinstance(stream[-1], ProcessExited) and stream[-1].exit_code == 0
    [ended] = client.exec_list(record.id)
    assert not ended.running and ended.exit_code == 0
    with pytest.raises(Conflict, match="has ended"):
        client.exec_kill(record.id, process.process_id)


def test_a_late_follower_catches_up_from_the_kept_output(fake_runtime: Runtime, client: Client) -> None:
    record = client.create()
    process = client.spawn(record.id, ["echo"], stdin=b"early")  # ends before anyone listens
    with fake_runtime.subscribe((exec_topic_prefix(record.id),)) as events:
        stream = list(follow(client, events, process, idle_s=0.2, timeout_s=10))
    assert [e.data for e in stream if isinstance(e, ProcessOutput)] == [b"echo", b"early"]
    assert not [e for e in stream if isinstance(e, Truncated)]
    assert isinstance(stream[-1], ProcessExited)


def test_kill_takes_signal_names_and_bad_requests_are_refused(
    fake_runtime: Runtime, client: Client, fake_provider: FakeProvider
) -> None:
    record = client.create()
    process = client.spawn(record.id, ["sleep", "100"], stdin_open=True)
    with pytest.raises(BadRequest, match="signal"):
        client.exec_kill(record.id, process.process_id, "BOGUS")
    client.exec_kill(record.id, process.process_id, "KILL")
    assert client.exec_list(record.id)[0].exit_code == 128 + 9
    with pytest.raises(NotFound):
        client.exec_stdin(record.id, "proc_nope", b"x")
    with pytest.raises(NotFound):
        client.exec_list("ws_nope")
    client.destroy(record.id)
    with pytest.raises(NotFound):
        client.exec_output(record.id, process.process_id)


def test_stopping_the_runtime_closes_the_providers_channels_and_ends_their_processes(
    fake_runtime: Runtime, fake_provider: FakeProvider
) -> None:
    with fake_runtime.client(timeout_s=10) as client:
        record = client.create()
        client.spawn(record.id, ["sleep", "100"], stdin_open=True)
    assert fake_provider.processes
    fake_runtime.stop()  # publishing the "lost" exit is best effort: the sockets close right after
    assert fake_provider.closed and not fake_provider.processes


def test_a_retried_exec_stdin_writes_once(fake_runtime: Runtime, client: Client) -> None:
    record = client.create()
    process = client.spawn(record.id, ["cat"], stdin_open=True)
    args = {"workspace_id": record.id, "process_id": process.process_id, "data": b"once"}
    client.request("exec_stdin", args, request_id="feed-1")
    client.request("exec_stdin", args, request_id="feed-1")  # the same request again: answered, not run
    client.exec_stdin(record.id, process.process_id, close=True)
    page = client.exec_output(record.id, process.process_id)
    assert [chunk.data for chunk in page.chunks if chunk.stream == "stdout"] == [b"once"]
