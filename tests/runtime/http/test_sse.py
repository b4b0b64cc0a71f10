"""Server-sent event streams over a real ZeroMQ XPUB on ``inproc://``: replay, then live, no gap."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
import zmq
import zmq.asyncio

from runtime.http import sse
from runtime.http.sse import frame, process_stream, subscribe, workspace_stream
from runtime.messages import (
    WELCOME,
    AnyEvent,
    GithubAppChanged,
    OutputChunk,
    OutputPage,
    ProcessExited,
    ProcessInfo,
    ProcessOutput,
    ProviderHealthChanged,
    encode,
    process_topic,
)

WS = "ws_1"
PROCESS = "proc_1"
TOPIC = process_topic(WS, PROCESS)
_endpoints = itertools.count()


def health(seq: int) -> ProviderHealthChanged:
    return ProviderHealthChanged(seq=seq, ts=float(seq), provider="gvisor", healthy=True, detail="", runtime="runsc")


def app_changed(seq: int) -> GithubAppChanged:
    return GithubAppChanged(seq=seq, ts=float(seq), action="set", app="ci")


def output(seq: int) -> ProcessOutput:
    return ProcessOutput(seq=seq, ts=float(seq), workspace_id=WS, process_id=PROCESS, stream="stdout", data=b"%d" % seq)


def exited(seq: int) -> ProcessExited:
    return ProcessExited(
        seq=seq, ts=float(seq), workspace_id=WS, process_id=PROCESS, exit_code=0, timed_out=False, duration_ms=1.0
    )


def page(chunks: list[int], exit: int | None = None, truncated: int = 0) -> dict[str, Any]:
    """An ``exec_output`` result as the HTTP side reads it (MessagePack, decoded as plain data)."""
    process = ProcessInfo(process_id=PROCESS, workspace_id=WS, topic=TOPIC, cmd=["make"], started_at=0.0)
    kept = [OutputChunk(seq, "stdout", b"%d" % seq, float(seq)) for seq in chunks]
    result = OutputPage(process=process, chunks=kept, truncated=truncated, exit=None if exit is None else exited(exit))
    decoded: dict[str, Any] = msgspec.msgpack.decode(encode(result))
    return decoded


class Publisher:
    """The runtime's side: an XPUB on ``inproc://`` that greets each subscriber as the Gateway's does."""

    def __init__(self) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.endpoint = f"inproc://sse-test-{next(_endpoints)}"
        self._async = zmq.asyncio.Context.shadow(self.context.underlying)
        self.socket = self._async.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
        self.socket.bind(self.endpoint)

    async def joined(self, topics: tuple[str, ...]) -> Any:
        """A subscriber's socket, once ``subscribe`` returned (its welcome came).

        Reading the subscription on this side is what makes the XPUB take the new
        subscriber in (and send it the welcome), as the Gateway's poll loop does.
        """
        socket, subscription = await asyncio.gather(subscribe(self.context, self.endpoint, topics), self.socket.recv())
        assert subscription[:1] == b"\x01"
        return socket

    async def publish(self, topic: str, *events: Any) -> None:
        for event in events:
            await self.socket.send_multipart([topic.encode(), encode(event)])

    def close(self) -> None:
        self.socket.close()
        self.context.destroy(linger=0)


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    made = Publisher()
    yield made
    made.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):  # a safety net against a hang, not a measurement
            await test()

    asyncio.run(bounded())


def parse(chunk: bytes) -> dict[str, Any]:
    """One server-sent event: its fields, ``data`` decoded; the id and event match the data."""
    assert chunk.endswith(b"\n\n"), chunk
    fields = dict(line.split(": ", 1) for line in chunk.decode().removesuffix("\n\n").split("\n"))
    assert list(fields) == ["id", "event", "data"]
    event: dict[str, Any] = msgspec.json.decode(fields["data"])
    assert fields["id"] == str(event["seq"])
    assert fields["event"] == event["type"]
    return event


async def take(stream: AsyncIterator[bytes], until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Events of ``stream`` up to the first ``until`` accepts (keep-alive comments skipped)."""
    seen: list[dict[str, Any]] = []
    async for chunk in stream:
        if chunk.startswith(b":"):
            continue
        seen.append(parse(chunk))
        if until(seen[-1]):
            return seen
    raise AssertionError(f"the stream ended after {seen}")


class Log:
    """A stand-in state log: ``replay(after, limit)`` over a list of events, calls recorded."""

    def __init__(self, events: list[AnyEvent]) -> None:
        self.events = events
        self.calls: list[tuple[int, int]] = []

    def __call__(self, after: int, limit: int) -> list[AnyEvent]:
        self.calls.append((after, limit))
        return [event for event in self.events if event.seq > after][:limit]


def seq_at_least(seq: int) -> Callable[[dict[str, Any]], bool]:
    return lambda event: int(event["seq"]) >= seq


# ---------------------------------------------------------------------- frame


def test_a_frame_is_id_event_and_json_data_then_a_blank_line() -> None:
    assert frame({"type": "provider.health", "seq": 7, "healthy": True}) == (
        b'id: 7\nevent: provider.health\ndata: {"type":"provider.health","seq":7,"healthy":true}\n\n'
    )


def test_a_frame_without_seq_or_type_has_an_empty_id_and_the_default_event() -> None:
    assert frame({"note": "x"}) == b'id: \nevent: message\ndata: {"note":"x"}\n\n'


def test_a_frame_of_an_event_struct_as_plain_data_carries_bytes_as_base64() -> None:
    event = parse(frame(msgspec.to_builtins(output(3))))
    assert event == {**msgspec.to_builtins(output(3)), "data": "Mw=="}


# ---------------------------------------------------------------------- workspace_stream


def test_replayed_events_come_first_then_live_ones_without_repeating_the_overlap(publisher: Publisher) -> None:
    log = Log([health(seq) for seq in range(1, 6)])

    async def test() -> None:
        socket = await publisher.joined(sse.LOG_TOPICS)
        await publisher.publish("provider", *(health(seq) for seq in range(3, 9)))  # 3..5 were replayed too
        stream = workspace_stream(socket, sse.LOG_TOPICS, 0, log)
        try:
            seen = await take(stream, seq_at_least(8))
        finally:
            await stream.aclose()
        assert [event["seq"] for event in seen] == list(range(1, 9))
        assert seen[0] == msgspec.to_builtins(health(1))
        assert socket.closed

    run(test)
    assert log.calls == [(0, sse._REPLAY_PAGE)]


def test_replay_starts_after_the_last_event_id(publisher: Publisher) -> None:
    log = Log([health(seq) for seq in range(1, 6)])

    async def test() -> None:
        socket = await publisher.joined(sse.LOG_TOPICS)
        await publisher.publish("provider", health(6))
        stream = workspace_stream(socket, sse.LOG_TOPICS, 3, log)
        try:
            assert [event["seq"] for event in await take(stream, seq_at_least(6))] == [4, 5, 6]
        finally:
            await stream.aclose()

    run(test)


def test_without_a_last_event_id_nothing_is_replayed(publisher: Publisher) -> None:
    log = Log([health(seq) for seq in range(1, 6)])

    async def test() -> None:
        socket = await publisher.joined(sse.LOG_TOPICS)
        await publisher.publish("provider", health(2), health(9))
        stream = workspace_stream(socket, sse.LOG_TOPICS, None, log)
        try:
            assert [event["seq"] for event in await take(stream, seq_at_least(9))] == [2, 9]
        finally:
            await stream.aclose()

    run(test)
    assert log.calls == []


def test_replay_sends_only_the_topics_asked_for_and_skips_their_seqs_when_live(publisher: Publisher) -> None:
    log = Log([health(1), app_changed(2), health(3), app_changed(4)])

    async def test() -> None:
        socket = await publisher.joined(("provider",))
        await publisher.publish("github", app_changed(5))  # not subscribed: ZeroMQ drops it
        await publisher.publish("provider", health(3), health(6))
        stream = workspace_stream(socket, ("provider",), 0, log)
        try:
            seen = await take(stream, seq_at_least(6))
        finally:
            await stream.aclose()
        assert [(event["seq"], event["type"]) for event in seen] == [
            (1, "provider.health"),
            (3, "provider.health"),
            (6, "provider.health"),
        ]

    run(test)


@pytest.mark.parametrize("count", [sse._REPLAY_PAGE * 2, sse._REPLAY_PAGE * 2 + 234])
def test_a_replay_longer_than_a_page_is_read_in_pages_and_complete(publisher: Publisher, count: int) -> None:
    log = Log([health(seq) for seq in range(1, count + 1)])

    async def test() -> None:
        socket = await publisher.joined(sse.LOG_TOPICS)
        await publisher.publish("provider", health(count), health(count + 1))
        stream = workspace_stream(socket, sse.LOG_TOPICS, 0, log)
        try:
            seen = await take(stream, seq_at_least(count + 1))
        finally:
            await stream.aclose()
        assert [event["seq"] for event in seen] == list(range(1, count + 2))

    run(test)
    page_size = sse._REPLAY_PAGE
    assert log.calls == [(0, page_size), (page_size, page_size), (2 * page_size, page_size)]


# ---------------------------------------------------------------------- process_stream


def test_a_process_stream_sends_the_page_then_live_output_and_ends_after_the_exit(publisher: Publisher) -> None:
    async def test() -> None:
        socket = await publisher.joined((TOPIC,))
        await publisher.publish(TOPIC, output(2), output(3), output(4), exited(5), output(6))
        seen = [parse(chunk) async for chunk in process_stream(socket, 0, page([1, 2, 3]))]
        assert [(event["seq"], event["type"]) for event in seen] == [
            (1, "exec.output"),
            (2, "exec.output"),
            (3, "exec.output"),
            (4, "exec.output"),
            (5, "exec.exit"),
        ]
        assert seen[0] == {**msgspec.to_builtins(output(1)), "data": "MQ=="}
        assert seen[-1] == msgspec.to_builtins(exited(5))
        assert socket.closed

    run(test)


def test_a_page_that_ends_with_the_exit_ends_the_stream_at_once(publisher: Publisher) -> None:
    async def test() -> None:
        socket = await publisher.joined((TOPIC,))
        await publisher.publish(TOPIC, output(7))  # queued, never read: the page already ended the process
        seen = [parse(chunk) async for chunk in process_stream(socket, 0, page([1, 2], exit=3))]
        assert [(event["seq"], event["type"]) for event in seen] == [
            (1, "exec.output"),
            (2, "exec.output"),
            (3, "exec.exit"),
        ]
        assert socket.closed

    run(test)


def test_a_process_stream_resumes_after_the_last_event_id(publisher: Publisher) -> None:
    async def test() -> None:
        socket = await publisher.joined((TOPIC,))
        await publisher.publish(TOPIC, output(3), exited(4))
        seen = [parse(chunk) async for chunk in process_stream(socket, 2, page([3]))]
        assert [event["seq"] for event in seen] == [3, 4]

    run(test)


def test_output_no_longer_kept_is_announced_before_the_rest(publisher: Publisher) -> None:
    async def test() -> None:
        socket = await publisher.joined((TOPIC,))
        await publisher.publish(TOPIC, exited(6))
        seen = [parse(chunk) async for chunk in process_stream(socket, 0, page([4, 5], truncated=3))]
        assert seen[0] == {"type": "exec.truncated", "seq": 3, "workspace_id": WS, "process_id": PROCESS, "missed": 3}
        assert [event["seq"] for event in seen] == [3, 4, 5, 6]

    run(test)
