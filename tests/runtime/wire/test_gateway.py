"""The Gateway over real ZeroMQ sockets, with a stand-in dispatcher."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zmq

from runtime.errors import BadRequest, ConfigError, Conflict, InternalError, ProviderUnavailable, Unauthorized
from runtime.messages import ArgsStruct, ReplyTo, Request, WorkspaceRecord, WorkspaceStateChanged, encode
from runtime.wire import Client, Subscriber
from runtime.wire.gateway import DEFERRED, MAX_REQUEST_BYTES, Gateway
from runtime.wire.outbox import Outbox
from tests.runtime.messages.test_messages import record

TOKEN = "t" * 32


class Handler:
    """Answers ping at once, defers exec to a thread using an Outbox, fails on demand."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], outbox_endpoint: str) -> None:
        self.context = context
        self.outbox_endpoint = outbox_endpoint

    def __call__(self, identity: bytes, request: Request, args: ArgsStruct) -> Any:
        if request.op == "ping":
            return {"version": "test"}
        if request.op == "get":
            raise Conflict("wrong state")
        if request.op == "stats":
            raise RuntimeError("bug")
        if request.op == "exec":
            reply_to = ReplyTo(identity, request.id)
            threading.Thread(target=self.answer_later, args=(reply_to,)).start()
            return DEFERRED
        raise BadRequest("unsupported here")

    def answer_later(self, reply_to: ReplyTo) -> None:
        outbox = Outbox(self.context, self.outbox_endpoint)
        outbox.reply(reply_to, record())
        outbox.publish(WorkspaceStateChanged(seq=1, ts=1.0, workspace_id="ws_1", state="ready", record=record()))
        outbox.close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    outbox = "inproc://test-outbox"
    gw = Gateway(
        context,
        token=TOKEN,
        request_endpoints=["tcp://127.0.0.1:*"],
        event_endpoints=["tcp://127.0.0.1:*"],
        outbox_endpoint=outbox,
        dispatch=Handler(context, outbox),
    )
    gw.start()
    yield gw
    gw.stop()
    context.destroy(linger=0)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[Client]:
    with Client(gateway.bound_endpoints[0], TOKEN, timeout_s=5) as c:
        yield c


def raw_roundtrip(gateway: Gateway, frames: list[bytes]) -> dict[str, Any]:
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(gateway.bound_endpoints[0])
        sock.send_multipart(frames)
        assert sock.poll(5000), "no reply"
        reply: dict[str, Any] = msgspec.msgpack.decode(sock.recv())
        return reply


def test_ping_is_answered_by_the_gateway_itself(client: Client) -> None:
    assert client.ping() == {"version": "test"}


def test_a_deferred_reply_comes_back_through_the_outbox_and_the_event_is_published(
    gateway: Gateway, client: Client
) -> None:
    with Subscriber(gateway.bound_event_endpoints[0], token=TOKEN) as events:
        result = client.request("exec", {"workspace_id": "ws_1", "cmd": "true"})
        assert msgspec.msgpack.decode(result, type=WorkspaceRecord) == record()
        topic, event = events.recv(5)
    assert topic == "workspace"
    assert event["type"] == "workspace.state"
    assert event["seq"] == 1


def test_a_wrong_token_is_unauthorized(gateway: Gateway) -> None:
    with Client(gateway.bound_endpoints[0], "wrong-token-0000000", timeout_s=5) as bad, pytest.raises(Unauthorized):
        bad.ping()


def test_errors_keep_their_code_and_unexpected_exceptions_become_internal(client: Client) -> None:
    with pytest.raises(Conflict, match="wrong state") as caught:
        client.get("ws_1")
    assert caught.value.retryable is False
    with pytest.raises(InternalError):
        client.call("stats")


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"\xc1garbage"], "malformed request"),
        ([encode({"id": "r", "op": "ping"}), b"extra"], "exactly one frame"),
        ([encode([1, 2, 3])], "malformed request"),
        ([encode({"id": "r", "op": "launch", "token": TOKEN})], "unknown op 'launch'"),
        ([encode({"id": "r", "op": "create", "token": TOKEN, "args": {"cpu": "x"}})], "invalid args for create"),
    ],
)
def test_malformed_input_gets_bad_request_and_the_server_keeps_serving(
    gateway: Gateway, client: Client, frames: list[bytes], message: str
) -> None:
    reply = raw_roundtrip(gateway, frames)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "bad_request"
    assert message in reply["error"]["message"]
    assert client.ping() == {"version": "test"}


def test_the_request_id_is_echoed_even_in_errors(gateway: Gateway) -> None:
    reply = raw_roundtrip(gateway, [encode({"id": "abc", "op": "launch", "token": TOKEN})])
    assert reply["id"] == "abc"


def test_an_oversized_request_is_refused(gateway: Gateway) -> None:
    frame = encode({"id": "big", "op": "ping", "token": TOKEN, "args": {"pad": b"x" * (MAX_REQUEST_BYTES + 1)}})
    reply = raw_roundtrip(gateway, [frame])
    assert reply["error"]["code"] == "bad_request"
    assert "exceeds the limit" in reply["error"]["message"]


def test_draining_refuses_new_requests_as_retryable(gateway: Gateway, client: Client) -> None:
    gateway.drain()
    with pytest.raises(ProviderUnavailable, match="shutting down") as caught:
        client.ping()
    assert caught.value.retryable is True


def test_binding_a_taken_endpoint_fails_start_with_a_clear_error(gateway: Gateway) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    second = Gateway(
        context,
        token=TOKEN,
        request_endpoints=[gateway.bound_endpoints[0]],
        event_endpoints=["tcp://127.0.0.1:*"],
        outbox_endpoint="inproc://other",
        dispatch=lambda *_: None,
    )
    with pytest.raises(ConfigError, match=r"cannot listen on tcp://127\.0\.0\.1:.*(in use|already)"):
        second.start()
    context.destroy(linger=0)


@pytest.mark.parametrize("topics", [("workspace",), ("",)])
def test_a_subscriber_is_live_as_soon_as_it_is_constructed(
    gateway: Gateway, client: Client, topics: tuple[str, ...]
) -> None:
    for _ in range(20):  # ZeroMQ's slow joiner would lose some of these events
        with Subscriber(gateway.bound_event_endpoints[0], topics, token=TOKEN) as events:
            client.request("exec", {"workspace_id": "ws_1", "cmd": "true"})
            topic, event = events.recv(5)  # the welcome itself is never returned
            assert (topic, event["type"]) == ("workspace", "workspace.state")


def test_every_reply_is_observed_with_its_op_and_whether_it_succeeded() -> None:
    # A successful reply given at once (ping) was once counted as an error: the outcome
    # was confused with the dispatcher's result.
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    outbox = "inproc://test-observed-outbox"
    observed: list[tuple[str, bool]] = []
    answered = threading.Event()

    def observe(op: str, seconds: float, ok: bool) -> None:
        assert seconds >= 0
        observed.append((op, ok))
        if len(observed) == 4:
            answered.set()

    gw = Gateway(
        context,
        token=TOKEN,
        request_endpoints=["tcp://127.0.0.1:*"],
        event_endpoints=["tcp://127.0.0.1:*"],
        outbox_endpoint=outbox,
        dispatch=Handler(context, outbox),
        observe=observe,
    )
    gw.start()
    try:
        with Client(gw.bound_endpoints[0], TOKEN, timeout_s=5) as client:
            client.ping()  # answered at once
            with pytest.raises(Conflict):
                client.get("ws_1")  # refused at once
            client.request("exec", {"workspace_id": "ws_1", "cmd": "true"})  # answered later by an "actor"
            with pytest.raises(InternalError):
                client.call("stats")  # a bug in the dispatcher
        assert answered.wait(5)
    finally:
        gw.stop()
        context.destroy(linger=0)
    assert observed == [("ping", True), ("get", False), ("exec", True), ("stats", False)]
