"""``follow``: a streamed process's events in order, gaps filled, the exit never missed.

The events source, the client and the clock are stand-ins: the events source moves the
clock on by the time each ``recv`` would have taken, so idle and overall timeouts are
exercised exactly and without waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import pytest

from runtime.errors import Timeout
from runtime.messages import (
    OutputChunk,
    OutputPage,
    ProcessExited,
    ProcessInfo,
    ProcessOutput,
    StreamEvent,
    Truncated,
    encode,
    process_topic,
)
from runtime.wire import streams
from runtime.wire.streams import follow

WS = "ws_1"
PROCESS = ProcessInfo(
    process_id="p1", workspace_id=WS, topic=process_topic(WS, "p1"), cmd=["make"], started_at=1.0, stdin_open=False
)
OTHER = process_topic(WS, "p2")
STEP_S = 2**-6  # how long each event takes to arrive (a power of two: clock sums stay exact)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class Quiet:
    """In a script: nothing arrives for the whole ``recv`` timeout."""


QUIET = Quiet()


class Events:
    """A Subscriber stand-in: plays ``script`` (events as the wire has them, or ``QUIET``), then stays quiet."""

    def __init__(self, clock: Clock, script: Iterable[tuple[str, Any] | Quiet]) -> None:
        self.clock = clock
        self.script = list(script)
        self.waits: list[float] = []

    def recv(self, timeout_s: float = 10.0) -> tuple[str, dict[str, Any]]:
        self.waits.append(timeout_s)
        item = self.script.pop(0) if self.script else QUIET
        if isinstance(item, Quiet):
            self.clock.now += timeout_s
            raise Timeout(f"no event within {timeout_s:g} s")
        self.clock.now += STEP_S
        topic, event = item
        return topic, msgspec.msgpack.decode(encode(event))  # as the Subscriber decodes it: a plain map


class Runtime:
    """A Client stand-in answering ``exec_output`` with ``page(after)``."""

    def __init__(self, page: Callable[[int], OutputPage]) -> None:
        self.page = page
        self.asked: list[tuple[str, str, int]] = []

    def exec_output(self, workspace_id: str, process_id: str, after: int = 0) -> OutputPage:
        self.asked.append((workspace_id, process_id, after))
        return self.page(after)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(streams, "time", fake)
    return fake


def out(seq: int, data: bytes | None = None, stream: str = "stdout", process_id: str = "p1") -> ProcessOutput:
    return ProcessOutput(
        seq=seq, ts=float(seq), workspace_id=WS, process_id=process_id, stream=stream, data=data or f"{seq}".encode()
    )


def exited(seq: int, exit_code: int | None = 0, process_id: str = "p1", error: str | None = None) -> ProcessExited:
    return ProcessExited(
        seq=seq, ts=float(seq), workspace_id=WS, process_id=process_id, exit_code=exit_code, timed_out=False,
        duration_ms=5.0, error=error,
    )  # fmt: skip


def mine(event: ProcessOutput | ProcessExited) -> tuple[str, Any]:
    return PROCESS.topic, event


def page(chunks: Iterable[int] = (), truncated: int = 0, exit: ProcessExited | None = None) -> OutputPage:
    kept = [OutputChunk(seq, "stderr", f"kept {seq}".encode(), float(seq)) for seq in chunks]
    return OutputPage(process=PROCESS, chunks=kept, truncated=truncated, exit=exit)


def never_asked(after: int) -> OutputPage:
    raise AssertionError(f"exec_output(after={after}) was not expected")


def run(runtime: Runtime, events: Events, **options: Any) -> list[StreamEvent]:
    options.setdefault("timeout_s", 60.0)
    return list(follow(runtime, events, PROCESS, **options))  # type: ignore[arg-type]


def test_events_that_arrive_in_order_are_yielded_as_they_come(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), mine(out(2, stream="stderr")), mine(out(3)), mine(exited(4, 2))])
    runtime = Runtime(never_asked)
    assert run(runtime, events) == [out(1), out(2, stream="stderr"), out(3), exited(4, 2)]
    assert runtime.asked == []


def test_a_gap_is_filled_from_the_output_the_runtime_kept(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), mine(out(4)), mine(out(5)), mine(exited(6))])
    runtime = Runtime(lambda after: page(chunks=range(after + 1, 5)))
    stream = run(runtime, events)
    assert runtime.asked == [(WS, "p1", 1)]
    kept = [
        ProcessOutput(seq=seq, ts=float(seq), workspace_id=WS, process_id="p1", stream="stderr", data=b"kept %d" % seq)
        for seq in (2, 3, 4)
    ]
    assert stream == [out(1), *kept, out(5), exited(6)]


def test_kept_chunks_already_yielded_are_not_yielded_twice(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), mine(out(2)), mine(out(4)), mine(exited(5))])
    runtime = Runtime(lambda after: page(chunks=[1, 2, 3, 4]))  # a page that starts earlier than asked
    stream = run(runtime, events)
    assert [event.seq for event in stream] == [1, 2, 3, 4, 5]
    assert runtime.asked == [(WS, "p1", 2)]


def test_output_no_longer_kept_is_reported_as_truncated_before_what_was_kept(clock: Clock) -> None:
    # A late follower: the first event it hears is seq 6; the runtime kept only 4 and 5 before it.
    events = Events(clock, [mine(out(6)), mine(out(7)), mine(exited(8, 1))])
    runtime = Runtime(lambda after: page(chunks=[4, 5, 6], truncated=3))
    stream = run(runtime, events)
    assert runtime.asked == [(WS, "p1", 0)]
    assert stream[0] == Truncated(process_id="p1", missed=3)
    assert [event.seq for event in stream[1:]] == [4, 5, 6, 7, 8]
    assert stream[-1] == exited(8, 1)


def test_duplicates_of_events_already_yielded_are_skipped(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), mine(out(1)), mine(out(2)), mine(out(1)), mine(exited(3))])
    runtime = Runtime(never_asked)
    assert run(runtime, events) == [out(1), out(2), exited(3)]


def test_other_processes_and_other_kinds_of_events_are_skipped(clock: Clock) -> None:
    events = Events(
        clock,
        [
            (OTHER, out(1, b"theirs", process_id="p2")),
            mine(out(1)),
            (OTHER, exited(2, process_id="p2")),
            (PROCESS.topic, {"type": "workspace.state", "seq": 2}),
            ("workspace", {"type": "exec.output", "seq": 2}),
            mine(exited(2)),
        ],
    )
    runtime = Runtime(never_asked)
    assert run(runtime, events) == [out(1), exited(2)]


def test_an_exit_missed_in_a_quiet_stream_is_found_through_the_kept_output(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), QUIET])
    runtime = Runtime(lambda after: page(exit=exited(2, 0)))
    assert run(runtime, events, idle_s=0.5) == [out(1), exited(2, 0)]
    assert runtime.asked == [(WS, "p1", 1)]
    assert events.waits == [0.5, 0.5]  # each wait for an event lasts at most idle_s


def test_an_exit_missed_among_other_processes_events_is_found_once_idle_s_passes(clock: Clock) -> None:
    # Other processes keep the stream busy, so recv never times out; idle_s still bounds the wait.
    chatter = [(OTHER, out(n, process_id="p2")) for n in range(2, 200)]
    events = Events(clock, [mine(out(1)), *chatter])
    runtime = Runtime(lambda after: page(exit=exited(2, 137, error="killed")))
    start = clock.now
    stream = run(runtime, events, idle_s=1.0)
    assert stream == [out(1), exited(2, 137, error="killed")]
    assert runtime.asked == [(WS, "p1", 1)]
    heard_last = start + STEP_S
    assert heard_last + 1.0 <= clock.now < heard_last + 1.0 + 2 * STEP_S  # asked as soon as idle_s had passed


def test_a_quiet_process_that_goes_on_is_checked_every_idle_s(clock: Clock) -> None:
    pages = iter([page(), page(chunks=[1]), page(exit=exited(2))])
    events = Events(clock, [])
    runtime = Runtime(lambda after: next(pages))
    stream = run(runtime, events, idle_s=2.0)
    assert [event.seq for event in stream] == [1, 2]
    assert runtime.asked == [(WS, "p1", 0), (WS, "p1", 0), (WS, "p1", 1)]
    assert clock.now == 100.0 + 3 * 2.0


def test_an_exit_with_a_lost_exit_code_ends_the_stream(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), mine(exited(2, None, error="agent lost"))])
    stream = run(Runtime(never_asked), events)
    assert stream[-1] == exited(2, None, error="agent lost")


def test_following_gives_up_with_a_timeout_when_the_process_does_not_end_in_time(clock: Clock) -> None:
    events = Events(clock, [mine(out(1))])
    runtime = Runtime(lambda after: page())
    seen: list[StreamEvent] = []
    start = clock.now
    with pytest.raises(Timeout) as caught:
        seen.extend(follow(runtime, events, PROCESS, idle_s=1.0, timeout_s=3.5))  # type: ignore[arg-type]
    assert caught.value.message == "process p1 did not end within 3.5 s"
    assert seen == [out(1)]
    assert start + 3.5 <= clock.now < start + 3.5 + 1.0
    assert runtime.asked and all(asked == (WS, "p1", 1) for asked in runtime.asked)


def test_without_a_timeout_following_goes_on_until_the_exit(clock: Clock) -> None:
    events = Events(clock, [mine(out(1)), *[QUIET] * 50, mine(exited(2))])
    runtime = Runtime(lambda after: page())
    assert list(follow(runtime, events, PROCESS, idle_s=10.0)) == [out(1), exited(2)]  # type: ignore[arg-type]
    assert len(runtime.asked) == 50
