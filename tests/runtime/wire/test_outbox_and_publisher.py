"""Outbox frames and the Publisher thread, read by a real PULL socket on inproc."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import msgspec
import pytest
import zmq

from runtime.errors import CapacityExceeded, Conflict, NotFound, ProviderUnavailable, Timeout, WorkspaceError
from runtime.messages import (
    AlertRaised,
    ErrorBody,
    ProcessOutput,
    ReplyTo,
    WorkspaceRecord,
    WorkspaceStateChanged,
    decode_as,
    decode_event,
    decode_reply,
    encode,
)
from runtime.wire import Publisher
from runtime.wire.outbox import (
    ERROR,
    KIND_EVENT,
    KIND_REPLY,
    OK,
    RETRYABLE,
    Outbox,
    encode_error,
    encode_ok,
    outcome,
)
from tests.runtime.messages.test_messages import record

ENDPOINT = "inproc://test-gateway-pull"
Context = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture
def pull(context: Context) -> Iterator[zmq.Socket[bytes]]:
    """The Gateway's side: a PULL socket bound where outboxes connect."""
    sock = context.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ENDPOINT)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def outbox(context: Context, pull: zmq.Socket[bytes]) -> Iterator[Outbox]:
    box = Outbox(context, ENDPOINT)
    try:
        yield box
    finally:
        box.close()


def receive(pull: zmq.Socket[bytes], timeout_s: float = 5.0) -> list[bytes]:
    assert pull.poll(int(timeout_s * 1000)), "nothing reached the gateway's PULL socket"
    return pull.recv_multipart()


# ---------------------------------------------------------------------- outcome and encoders


@pytest.mark.parametrize(
    ("error", "frame"),
    [
        (None, OK),
        (Conflict("no"), ERROR),
        (NotFound("no"), ERROR),
        (CapacityExceeded("full"), RETRYABLE),
        (ProviderUnavailable("down"), RETRYABLE),
        (Timeout("slow"), RETRYABLE),
        (Conflict("try again", retryable=True), RETRYABLE),
        (CapacityExceeded("never", retryable=False), ERROR),
    ],
)
def test_the_outcome_frame_says_ok_retryable_or_error(error: WorkspaceError | None, frame: bytes) -> None:
    assert outcome(error) == frame


def test_encoded_replies_decode_as_a_client_reads_them() -> None:
    ok = decode_reply(encode_ok("r1", record()))
    assert (ok.id, ok.ok, ok.error) == ("r1", True, None)
    assert decode_as(ok.result, WorkspaceRecord) == record()
    failed = decode_reply(encode_error("r2", ProviderUnavailable("daemon down")))
    assert (failed.id, failed.ok) == ("r2", False)
    assert failed.error == ErrorBody("provider_unavailable", "daemon down", True)


# ---------------------------------------------------------------------- Outbox


def test_a_reply_travels_as_kind_identity_id_outcome_and_reply(outbox: Outbox, pull: zmq.Socket[bytes]) -> None:
    outbox.reply(ReplyTo(b"\x00client", "r1"), {"version": "1"})
    kind, identity, request_id, result, reply = receive(pull)
    assert (kind, identity, request_id, result) == (KIND_REPLY, b"\x00client", b"r1", OK)
    decoded = decode_reply(reply)
    assert (decoded.id, decoded.ok) == ("r1", True)
    assert msgspec.msgpack.decode(decoded.result) == {"version": "1"}


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (Conflict("wrong state"), ERROR),
        (CapacityExceeded("full"), RETRYABLE),
        (Conflict("again", retryable=True), RETRYABLE),
    ],
)
def test_a_failure_travels_with_its_outcome_and_error_body(
    outbox: Outbox, pull: zmq.Socket[bytes], error: WorkspaceError, result: bytes
) -> None:
    outbox.fail(ReplyTo(b"c1", "r9"), error)
    kind, identity, request_id, outcome_frame, reply = receive(pull)
    assert (kind, identity, request_id, outcome_frame) == (KIND_REPLY, b"c1", b"r9", result)
    decoded = decode_reply(reply)
    assert decoded.ok is False
    assert decoded.error == ErrorBody(error.code, error.message, error.retryable)


def test_an_event_travels_on_its_classs_topic(outbox: Outbox, pull: zmq.Socket[bytes]) -> None:
    state = WorkspaceStateChanged(seq=4, ts=1.0, workspace_id="ws_1", state="ready", record=record())
    alert = AlertRaised(seq=5, ts=2.0, key="cpu", resource="cpu", message="hot", value=99.0, limit=100.0)
    outbox.publish(state)
    outbox.publish(alert)
    kind, topic, payload = receive(pull)
    assert (kind, topic) == (KIND_EVENT, b"workspace")
    assert decode_event(payload) == state
    kind, topic, payload = receive(pull)
    assert (kind, topic) == (KIND_EVENT, b"alert")
    assert decode_event(payload) == alert


def test_a_raw_event_travels_as_given(outbox: Outbox, pull: zmq.Socket[bytes]) -> None:
    payload = encode(ProcessOutput(seq=1, ts=1.0, workspace_id="ws_1", process_id="p1", stream="stdout", data=b"x"))
    outbox.publish_raw("exec.ws_1.p1", payload)
    assert receive(pull) == [KIND_EVENT, b"exec.ws_1.p1", payload]


def test_what_an_outbox_sent_before_closing_still_arrives_in_order(context: Context, pull: zmq.Socket[bytes]) -> None:
    box = Outbox(context, ENDPOINT)
    for n in range(50):
        box.publish_raw("t", str(n).encode())
    box.close()
    assert [receive(pull)[2] for _ in range(50)] == [str(n).encode() for n in range(50)]


def test_outboxes_of_many_threads_reach_one_pull_socket(context: Context, pull: zmq.Socket[bytes]) -> None:
    def answer(n: int) -> None:
        box = Outbox(context, ENDPOINT)  # each thread its own
        try:
            box.reply(ReplyTo(f"c{n}".encode(), f"r{n}"), n)
        finally:
            box.close()

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    replies = {tuple(receive(pull)[1:3]) for _ in threads}
    for thread in threads:
        thread.join(5)
    assert replies == {(f"c{n}".encode(), f"r{n}".encode()) for n in range(8)}


# ---------------------------------------------------------------------- Publisher


class RecordingOutbox(Outbox):
    """An outbox that notes the thread it was made and closed in."""

    def __init__(self, context: Context, endpoint: str) -> None:
        super().__init__(context, endpoint)
        self.made_in = threading.current_thread()
        self.closed_in: threading.Thread | None = None

    def close(self) -> None:
        self.closed_in = threading.current_thread()
        super().close()


class Factory:
    """Makes the publisher's outbox once ``release`` is set, so events can queue up first."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.release = threading.Event()
        self.made: list[RecordingOutbox] = []

    def __call__(self) -> Outbox:
        assert self.release.wait(5), "the test never released the publisher"
        box = RecordingOutbox(self.context, ENDPOINT)
        self.made.append(box)
        return box


@pytest.fixture
def factory(context: Context, pull: zmq.Socket[bytes]) -> Factory:
    return Factory(context)


def test_the_publisher_publishes_in_order_through_one_outbox_of_its_own_thread(
    factory: Factory, pull: zmq.Socket[bytes]
) -> None:
    factory.release.set()
    publisher = Publisher(factory)
    try:
        for n in range(200):
            publisher.publish(f"exec.ws_1.p{n % 3}", n.to_bytes(2, "big"))
        frames = [receive(pull) for _ in range(200)]
    finally:
        publisher.close()
    assert frames == [[KIND_EVENT, f"exec.ws_1.p{n % 3}".encode(), n.to_bytes(2, "big")] for n in range(200)]
    [box] = factory.made
    assert box.made_in is not threading.current_thread()
    assert box.made_in.name == "process-events"
    assert box.closed_in is box.made_in


def test_close_publishes_everything_queued_before_it_then_stops(factory: Factory, pull: zmq.Socket[bytes]) -> None:
    publisher = Publisher(factory, capacity=100)
    for n in range(100):  # all queued while the thread cannot publish yet
        publisher.publish("exec.ws_1.p1", str(n).encode())
    factory.release.set()
    publisher.close()
    [box] = factory.made
    assert box.closed_in is box.made_in  # the thread ended: close() joined it
    assert not box.made_in.is_alive()
    assert [receive(pull)[2] for _ in range(100)] == [str(n).encode() for n in range(100)]
