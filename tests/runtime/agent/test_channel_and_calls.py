"""AgentChannel, and the calls spoken over it, against a fake agent scripted by each test.

The fake agent is the other end of a socket pair: a thread reads the bootstrap (the
source's length, a newline, the source) as the real agent's ``BOOTSTRAP`` does, greets,
and queues every request frame; the test answers them with ``encode_frame``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runtime.agent import calls, files, program
from runtime.agent.channel import AgentChannel, AgentGone
from runtime.agent.program import FrameReader, encode_frame
from runtime.errors import BadRequest, Conflict, NotFound, Timeout, WorkspaceError
from runtime.messages import Command
from tests.helpers import poll_until

T = TypeVar("T")
Frame = tuple[dict[str, Any], bytes]

FAKE_PID = 4242


def _same(data: bytes) -> bytes:
    return data


class FakeAgent:
    """The agent's end of a socket pair: boots like the real agent, then queues each request.

    Args:
        hello: Whether it greets once it has read its source.
        encode: What its outgoing bytes go through (e.g. a stream the channel must demux).
    """

    def __init__(self, *, hello: bool = True, encode: Callable[[bytes], bytes] = _same) -> None:
        self._sock, self.runtime_end = socket.socketpair()
        self._hello = hello
        self._encode = encode
        self._send_lock = threading.Lock()
        self.source = b""
        self.requests: queue.Queue[Frame] = queue.Queue()
        self.ended = threading.Event()  # the runtime's end closed the channel
        self._thread = threading.Thread(target=self._serve, name="fake-agent", daemon=True)
        self._thread.start()

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        self.send_raw(encode_frame(header, payload))

    def send_raw(self, data: bytes) -> None:
        with self._send_lock:
            self._sock.sendall(self._encode(data))

    def next_request(self) -> Frame:
        return self.requests.get(timeout=10)

    def hang_up(self) -> None:
        """End the channel from the agent's side (it died)."""
        with contextlib.suppress(OSError):  # already shut down
            self._sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.hang_up()
        self._thread.join(10)
        assert not self._thread.is_alive()
        self._sock.close()
        self.runtime_end.close()

    def _serve(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            size = stream.readline()
            if not size:
                return
            self.source = stream.read(int(size))
            if self._hello:
                self.send({"ev": "hello", "pid": FAKE_PID, "python": "3.99"})
            frames = FrameReader()
            while data := stream.read1(65536):
                for frame in frames.feed(data):
                    self.requests.put(frame)
        except OSError:
            pass  # hung up by the test
        finally:
            stream.close()
            self.ended.set()


class Sink:
    """Records a spawned process's events, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.done = threading.Event()

    def output(self, stream: str, data: bytes) -> None:
        self.events.append(("out", stream, data))

    def exited(self, exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None) -> None:
        self.events.append(("exit", exit_code, timed_out, duration_ms, error))
        self.done.set()


Connect = Callable[..., tuple[FakeAgent, AgentChannel]]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Fake agents and channels to them (not yet ready); all closed after the test."""
    made: list[tuple[FakeAgent, AgentChannel]] = []

    def make(
        *, hello: bool = True, encode: Callable[[bytes], bytes] = _same, **options: Any
    ) -> tuple[FakeAgent, AgentChannel]:
        agent = FakeAgent(hello=hello, encode=encode)
        channel = AgentChannel(agent.runtime_end, "fake", **options)
        made.append((agent, channel))
        return agent, channel

    yield make
    for agent, channel in made:
        channel.close()
        agent.stop()


@pytest.fixture
def ready(connect: Connect) -> tuple[FakeAgent, AgentChannel]:
    """A fake agent that has greeted, and its channel."""
    agent, channel = connect()
    channel.wait_ready(10)
    return agent, channel


def answered(agent: FakeAgent, call: Callable[[], T], reply: dict[str, Any], payload: bytes = b"") -> tuple[Frame, T]:
    """Make ``call`` in a thread; the fake agent answers its one request with ``reply``."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        request = agent.next_request()
        agent.send({**reply, "id": request[0]["id"]}, payload)
        return request, future.result(10)


def refused(agent: FakeAgent, call: Callable[[], object], reply: dict[str, Any]) -> tuple[Frame, BaseException]:
    """Make ``call`` in a thread; the fake agent answers with ``reply`` (``ok`` false); return the error."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        request = agent.next_request()
        agent.send({"ok": False, **reply, "id": request[0]["id"]})
        error = future.exception(10)
    assert error is not None
    return request, error


def in_order(agent: FakeAgent, channel: AgentChannel) -> None:
    """Return once every frame the fake agent sent so far was handled (frames are handled in order)."""
    answered(agent, lambda: channel.call({"op": "ping"}), {"ok": True})


# ---------------------------------------------------------------------- start-up


def test_the_agent_is_sent_its_source_and_is_ready_when_it_greets(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    assert agent.source == Path(program.__file__).read_bytes()
    assert channel.alive and channel.agent_pid == FAKE_PID


def test_waiting_for_an_agent_that_never_greets_times_out_then_fails_when_it_ends(connect: Connect) -> None:
    agent, channel = connect(hello=False)
    with pytest.raises(Timeout, match=r"the agent of fake did not start within 0\.2 s") as late:
        channel.wait_ready(0.2)
    assert late.value.retryable and channel.alive
    agent.hang_up()
    with pytest.raises(AgentGone, match="stopped as it started") as gone:
        channel.wait_ready(10)
    assert not gone.value.sent
    poll_until(lambda: not channel.alive, timeout_s=10)


def test_text_in_place_of_the_greeting_says_why_the_agent_did_not_start_without_a_warning(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    # What Docker writes into an exec's stream when it cannot start the process (here: the
    # workspace is being destroyed as its agent starts).
    agent, channel = connect(hello=False)
    agent.send_raw(b"OCI runtime exec failed: exec failed: container is stopped\r\n")
    said = r"did not start: OCI runtime exec failed: exec failed: container is stopped$"
    with pytest.raises(AgentGone, match=said) as gone:
        channel.wait_ready(10)
    assert not gone.value.sent
    poll_until(lambda: not channel.alive, timeout_s=10)
    assert agent.ended.wait(10)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


# ---------------------------------------------------------------------- calls and replies


def test_a_reply_reaches_the_call_with_its_id_and_others_are_ignored(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(channel.call, {"op": "read", "path": "/workspace/x"}, b"in")
        (header, payload) = agent.next_request()
        assert header == {"op": "read", "path": "/workspace/x", "id": header["id"]} and payload == b"in"
        agent.send({"id": header["id"] + 100, "ok": True}, b"not yours")  # nobody waits for it
        agent.send({"ack": header["id"] + 100})
        agent.send({"id": header["id"], "ok": True, "size": 5}, b"yours")
        assert future.result(10) == ({"id": header["id"], "ok": True, "size": 5}, b"yours")
    _, second = answered(agent, lambda: channel.call({"op": "ping"}), {"ok": True, "n": 2})
    assert second[0]["n"] == 2  # the stray reply was not taken for the next call's


def test_concurrent_calls_each_get_their_own_reply(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    count = 8
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(channel.call, {"op": "ping", "n": n}, str(n).encode()) for n in range(count)]
        requests = [agent.next_request() for _ in range(count)]
        assert len({header["id"] for header, _ in requests}) == count  # every call has its own id
        for header, payload in reversed(requests):  # answered in the reverse order
            agent.send({"id": header["id"], "ok": True, "n": header["n"]}, payload + b" back")
        for n, future in enumerate(futures):
            header, payload = future.result(10)
            assert (header["n"], payload) == (n, f"{n} back".encode())


def test_an_acknowledged_request_is_lost_as_sent_when_the_channel_ends(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(channel.call, {"op": "run", "argv": ["sleep", "30"]})
        header, _ = agent.next_request()
        agent.send({"ack": header["id"]})
        agent.hang_up()  # the ack is handled before the end: frames are handled in order
        error = future.exception(10)
    assert isinstance(error, AgentGone) and error.sent
    assert "the agent of fake stopped" in str(error)


def test_a_request_never_acknowledged_is_lost_as_not_sent(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(channel.call, {"op": "run", "argv": ["true"]})
        header, _ = agent.next_request()
        agent.send({"ack": header["id"] + 1})  # another request's ack says nothing about this one
        agent.hang_up()
        error = future.exception(10)
    assert isinstance(error, AgentGone) and not error.sent
    assert not channel.alive
    with pytest.raises(AgentGone, match="the agent of fake is not running") as later:
        channel.call({"op": "ping"})
    assert not later.value.sent


def test_closing_the_channel_fails_waiting_calls_and_ends_the_agents_input(
    ready: tuple[FakeAgent, AgentChannel],
) -> None:
    agent, channel = ready
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(channel.call, {"op": "ping"})
        agent.next_request()
        channel.close()
        error = future.exception(10)
    assert isinstance(error, AgentGone) and not error.sent
    assert agent.ended.wait(10) and not channel.alive


def test_a_call_unanswered_in_time_is_a_timeout_and_its_late_reply_is_dropped(
    ready: tuple[FakeAgent, AgentChannel],
) -> None:
    agent, channel = ready
    with pytest.raises(Timeout, match=r"the agent of fake did not answer within 0\.2 s") as late:
        channel.call({"op": "run"}, timeout_s=0.2)
    assert late.value.retryable
    header, _ = agent.next_request()
    agent.send({"ack": header["id"]})
    agent.send({"id": header["id"], "ok": True, "late": True})
    _, frame = answered(agent, lambda: channel.call({"op": "ping"}), {"ok": True, "late": False})
    assert frame[0]["late"] is False and channel.alive


def test_a_frame_whose_header_is_not_a_json_object_ends_the_channel(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(channel.call, {"op": "ping"})
        agent.next_request()
        agent.send_raw(struct.pack(">II", 3, 0) + b"[1]")
        error = future.exception(10)
    assert isinstance(error, AgentGone) and not error.sent
    assert not channel.alive


def test_the_demux_hook_turns_pending_and_received_bytes_into_the_agents_stream(connect: Connect) -> None:
    def scramble(data: bytes) -> bytes:
        return bytes(byte ^ 0x5A for byte in data)

    seen: list[bytes] = []

    def demux(data: bytes) -> bytes:
        seen.append(data)
        return scramble(data)

    hello = scramble(encode_frame({"ev": "hello", "pid": 77}))
    agent, channel = connect(hello=False, encode=scramble, pending=hello[:5], demux=demux)
    agent.send_raw(encode_frame({"ev": "hello", "pid": 77})[5:])  # the rest of the greeting, scrambled
    channel.wait_ready(10)
    assert channel.agent_pid == 77 and seen[0] == hello[:5]
    _, (header, payload) = answered(agent, lambda: channel.call({"op": "ping"}), {"ok": True}, b"\x00\xffdata")
    assert header["ok"] and payload == b"\x00\xffdata"
    assert scramble(b"".join(seen)).endswith(encode_frame({"ok": True, "id": header["id"]}, b"\x00\xffdata"))


# ---------------------------------------------------------------------- process events


def spawned(agent: FakeAgent, channel: AgentChannel, key: str, sink: Sink) -> int:
    command = Command(argv=["sh", "-c", "echo"], stdin_open=True)
    request, pid = answered(agent, lambda: calls.spawn(channel, key, command, sink), {"ok": True, "pid": 321})
    assert request[0]["op"] == "spawn" and request[0]["key"] == key and request[0]["stdin_open"] is True
    return pid


def test_process_events_reach_the_sink_registered_with_the_spawn_in_order(
    ready: tuple[FakeAgent, AgentChannel],
) -> None:
    agent, channel = ready
    sink, other = Sink(), Sink()
    assert spawned(agent, channel, "p1", sink) == 321
    spawned(agent, channel, "p2", other)
    for stream, chunk in [("stdout", b"a"), ("stderr", b"b"), ("stdout", b"c"), ("stdout", b"d" * 70_000)]:
        agent.send({"ev": "out", "key": "p1", "stream": stream}, chunk)
    agent.send({"ev": "out", "key": "p9", "stream": "stdout"}, b"nobody's")
    agent.send({"ev": "exit", "key": "p1", "exit_code": 3, "timed_out": False, "duration_ms": 1.5})
    assert sink.done.wait(10)
    assert sink.events == [
        ("out", "stdout", b"a"),
        ("out", "stderr", b"b"),
        ("out", "stdout", b"c"),
        ("out", "stdout", b"d" * 70_000),
        ("exit", 3, False, 1.5, None),
    ]
    agent.send({"ev": "out", "key": "p1", "stream": "stdout"}, b"after its end")
    in_order(agent, channel)
    assert len(sink.events) == 5 and other.events == []  # an ended process hears nothing more
    agent.hang_up()
    assert other.done.wait(10)  # p1's sink would be told first (sinks are told in the order they came)
    assert len(sink.events) == 5


def test_a_sink_hears_that_its_process_is_lost_when_the_channel_ends(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    sink = Sink()
    spawned(agent, channel, "p1", sink)
    agent.send({"ev": "out", "key": "p1", "stream": "stdout"}, b"so far")
    agent.hang_up()
    assert sink.done.wait(10)
    assert sink.events[0] == ("out", "stdout", b"so far")
    assert sink.events[1][:4] == ("exit", None, False, 0.0)
    assert sink.events[1][4] == "the workspace's agent stopped (fake); the process is lost"
    assert len(sink.events) == 2


def test_a_refused_spawn_leaves_no_sink_behind(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    sink, witness = Sink(), Sink()
    command = Command(argv=["nope"])
    _, error = refused(
        agent, lambda: calls.spawn(channel, "p1", command, sink), {"code": "conflict", "error": "process p1 exists"}
    )
    assert isinstance(error, Conflict) and not error.retryable
    assert error.message == "the command could not start: process p1 exists"
    agent.send({"ev": "out", "key": "p1", "stream": "stdout"}, b"stray")
    spawned(agent, channel, "p2", witness)
    agent.hang_up()
    assert witness.done.wait(10)
    assert sink.events == []


def test_a_second_spawn_with_a_running_key_is_refused_and_the_first_process_keeps_its_sink(
    ready: tuple[FakeAgent, AgentChannel],
) -> None:
    agent, channel = ready
    first, second = Sink(), Sink()
    spawned(agent, channel, "p1", first)
    with pytest.raises(Conflict, match="process p1 is already running"):
        calls.spawn(channel, "p1", Command(argv=["true"]), second)
    agent.send({"ev": "exit", "key": "p1", "exit_code": 0, "timed_out": False, "duration_ms": 1.0})
    assert first.done.wait(10)
    assert first.events == [("exit", 0, False, 1.0, None)] and second.events == []


def test_a_spawn_that_times_out_leaves_no_sink_behind(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    sink, witness = Sink(), Sink()
    with pytest.raises(Timeout):
        channel.call({"op": "spawn", "key": "p1", "argv": ["x"]}, timeout_s=0.05, sink=sink)
    assert agent.next_request()[0]["key"] == "p1"  # the first spawn, never answered
    spawned(agent, channel, "p1", witness)  # the key is free again: nobody follows the first
    agent.hang_up()
    assert witness.done.wait(10)
    assert sink.events == []


def test_a_sink_that_fails_does_not_stop_the_channel(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready

    class Failing(Sink):
        def output(self, stream: str, data: bytes) -> None:
            raise RuntimeError("the sink broke")

    sink = Failing()
    spawned(agent, channel, "p1", sink)
    agent.send({"ev": "out", "key": "p1", "stream": "stdout"}, b"x")
    agent.send({"ev": "exit", "key": "p1", "exit_code": 0, "timed_out": True, "duration_ms": 9.0})
    assert sink.done.wait(10) and sink.events == [("exit", 0, True, 9.0, None)]
    in_order(agent, channel)
    assert channel.alive


# ---------------------------------------------------------------------- calls


def test_run_sends_the_command_and_splits_stdout_from_stderr(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    command = Command(argv=["cat"], cwd="/workspace/src", env={"A": "1"}, stdin=b"input", timeout_s=5, output_limit=99)
    reply = {"ok": True, "exit_code": 7, "timed_out": True, "duration_ms": 12.5, "stdout_len": 3}
    (header, payload), result = answered(agent, lambda: calls.run(channel, command), reply, b"outerr")
    assert header == {
        "op": "run",
        "argv": ["cat"],
        "cwd": "/workspace/src",
        "env": {"A": "1"},
        "timeout_s": 5,
        "limit": 99,
        "id": header["id"],
    }
    assert payload == b"input"
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out", b"err")
    assert result.timed_out and result.duration_ms == 12.5 and result.via == "agent"


def test_file_and_process_calls_carry_their_arguments(ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    (read, _), data = answered(agent, lambda: calls.read_file(channel, "/workspace/f"), {"ok": True}, b"contents")
    assert data == b"contents"
    assert (read["op"], read["path"], read["limit"]) == ("read", "/workspace/f", files.MAX_FILE_BYTES)
    (write, payload), _ = answered(
        agent, lambda: calls.write_file(channel, "/workspace/g", b"new", 0o640), {"ok": True}
    )
    assert (write["op"], write["path"], write["mode"], payload) == ("write", "/workspace/g", 0o640, b"new")
    (stdin, payload), _ = answered(agent, lambda: calls.write_stdin(channel, "p1", b"line\n", True), {"ok": True})
    assert (stdin["op"], stdin["key"], stdin["close"], payload) == ("stdin", "p1", True, b"line\n")
    (kill, _), _ = answered(agent, lambda: calls.kill(channel, "p1", 9), {"ok": True})
    assert (kill["op"], kill["key"], kill["signal"]) == ("kill", "p1", 9)


@pytest.mark.parametrize("reason", ["outside", "missing", "is_dir", "too_big", "something_new"])
def test_a_file_rules_refusal_becomes_the_files_refusal(reason: str, ready: tuple[FakeAgent, AgentChannel]) -> None:
    agent, channel = ready
    reply = {"code": "refused", "reason": reason, "error": "/etc/passwd"}
    _, error = refused(agent, lambda: calls.read_file(channel, "/workspace/link"), reply)
    expected = files.refusal("/workspace/link", reason, "/etc/passwd")
    assert type(error) is type(expected) and isinstance(error, WorkspaceError)
    assert error.message == expected.message and not error.retryable
    _, error = refused(agent, lambda: calls.write_file(channel, "/workspace/link", b"x", None), reply)
    assert type(error) is type(expected) and str(error) == expected.message


@pytest.mark.parametrize(
    ("code", "family"),
    [
        ("bad_request", BadRequest),
        ("not_found", NotFound),
        ("conflict", Conflict),
        ("failed", WorkspaceError),
        ("", WorkspaceError),
    ],
)
def test_the_agents_error_codes_become_their_families_and_are_not_retryable(
    code: str, family: type[WorkspaceError], ready: tuple[FakeAgent, AgentChannel]
) -> None:
    agent, channel = ready
    _, error = refused(agent, lambda: calls.run(channel, Command(argv=["x"])), {"code": code, "error": "it said no"})
    assert type(error) is family and isinstance(error, WorkspaceError)
    assert error.message == "the command was refused: it said no" and not error.retryable
    _, error = refused(agent, lambda: calls.kill(channel, "p7", 15), {"code": code})
    assert type(error) is family and isinstance(error, WorkspaceError)
    assert error.message == "signal to process p7: refused by the agent"


# ---------------------------------------------------------------------- garbage from the workspace

GARBAGE = {
    "a header length beyond any frame": struct.pack(">II", 0xFFFFFFFF, 0),
    "a payload length beyond any frame": struct.pack(">II", 2, 0xFFFFFFF0) + b"{}",
    "text": b"hello from the workspace\n" * 4,
    "a header that is not JSON": struct.pack(">II", 4, 0) + b"\xff\xfe{[",
    "a header nested deeper than the parser goes": struct.pack(">II", 100_000, 0) + b"[" * 100_000,
    "an ack that is not an id": encode_frame({"ack": [1]}),
    "a reply whose id is not a number": encode_frame({"id": {"x": 1}, "ok": True}),
    "a reply without ok": encode_frame({"id": 1}),
    "an unknown event": encode_frame({"ev": ["out"], "key": "p1"}),
    "an exit event without its fields": encode_frame({"ev": "exit", "key": "p1"}),
    "a greeting whose pid is text": encode_frame({"ev": "hello", "pid": "one"}),
}


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_on_the_agents_stream_ends_the_channel_with_one_warning_and_no_traceback(
    garbage: bytes, ready: tuple[FakeAgent, AgentChannel], caplog: pytest.LogCaptureFixture
) -> None:
    agent, channel = ready
    sink = Sink()
    spawned(agent, channel, "p1", sink)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(channel.call, {"op": "ping"})
        agent.next_request()
        agent.send_raw(garbage)
        error = future.exception(10)
    assert isinstance(error, AgentGone) and not channel.alive
    assert sink.done.wait(10) and sink.events[-1][4] is not None  # told its process is lost
    assert agent.ended.wait(10)  # the channel was closed: the agent's stdin ends, it exits
    warnings = [record for record in caplog.records if record.name == "runtime.agent.channel"]
    assert [record.levelname for record in warnings] == ["WARNING"]
    assert "the agent of fake sent garbage" in warnings[0].getMessage()
    assert not any(record.exc_info for record in caplog.records)


@pytest.mark.parametrize(
    "reply",
    [{"ok": True}, {"ok": True, "stdout_len": "x", "exit_code": 0, "timed_out": False, "duration_ms": 1.0}],
)
def test_a_malformed_reply_to_a_command_closes_the_channel_as_a_command_that_may_have_run(
    reply: dict[str, Any], ready: tuple[FakeAgent, AgentChannel]
) -> None:
    agent, channel = ready
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(calls.run, channel, Command(argv=["true"]))
        header, _ = agent.next_request()
        agent.send({**reply, "id": header["id"]})
        error = future.exception(10)
    assert isinstance(error, AgentGone) and error.sent  # it was received: never run it again
    assert "sent a malformed reply to a command" in str(error)
    assert agent.ended.wait(10) and not channel.alive
