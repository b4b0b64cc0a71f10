"""The Gateway keeps serving everyone when one client misbehaves: never reads, vanishes, or floods.

Replies leave through a ROUTER with ``ROUTER_MANDATORY``, explicit high-water marks and
non-blocking sends: a reply that cannot be delivered now is dropped and counted instead
of blocking the Gateway thread; a frame beyond ``MAXMSGSIZE`` drops that one connection.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from runtime.errors import BadRequest, Unauthorized
from runtime.messages import ArgsStruct, ReplyTo, Request, encode
from runtime.wire import Client
from runtime.wire.gateway import DEFERRED, Gateway
from runtime.wire.outbox import Outbox
from tests.helpers import poll_until

TOKEN = "h" * 32
BLOB = b"x" * (256 << 10)
Context = zmq.Context[zmq.Socket[bytes]]


class Dispatcher:
    """``ping`` at once, ``stats`` with a large result, ``exec`` deferred until the test answers it."""

    def __init__(self) -> None:
        self.deferred: list[ReplyTo] = []

    def __call__(self, identity: bytes, request: Request, args: ArgsStruct) -> Any:
        if request.op == "ping":
            return {"version": "test"}
        if request.op == "stats":
            return {"blob": BLOB}
        if request.op == "exec":
            self.deferred.append(ReplyTo(identity, request.id))
            return DEFERRED
        raise BadRequest("unsupported here")


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher()


@pytest.fixture
def start(context: Context, dispatcher: Dispatcher) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(**options: Any) -> Gateway:
        gateway = Gateway(
            context,
            token=TOKEN,
            request_endpoints=["tcp://127.0.0.1:*"],
            event_endpoints=["tcp://127.0.0.1:*"],
            outbox_endpoint=f"inproc://outbox-{secrets.token_hex(4)}",
            dispatch=dispatcher,
            **options,
        )
        gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


def request(op: str, request_id: str, args: dict[str, Any] | None = None) -> bytes:
    return encode({"id": request_id, "op": op, "token": TOKEN, "args": args or {}})


def raw_dealer(context: Context, endpoint: str, **options: int) -> zmq.Socket[bytes]:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for option, value in options.items():
        sock.setsockopt(getattr(zmq, option), value)
    sock.connect(endpoint)
    return sock


def test_a_client_that_never_reads_its_replies_does_not_hold_up_another(
    start: Callable[..., Gateway], context: Context
) -> None:
    gateway = start(hwm=10)
    endpoint = gateway.bound_endpoints[0]
    # Its replies (256 KiB each) fill its queue on the server, the kernel's buffers and its own
    # one-message queue: a blocking send would stop the Gateway thread right there.
    hog = raw_dealer(context, endpoint, RCVHWM=1, RCVBUF=4096)
    try:
        for n in range(300):
            hog.send(request("stats", f"hog-{n}"))
        poll_until(lambda: gateway.dropped_replies > 0, timeout_s=30)
        with Client(endpoint, TOKEN, context=context, timeout_s=10) as other:
            for _ in range(20):
                assert other.ping() == {"version": "test"}
    finally:
        hog.close()


def test_a_reply_to_a_client_that_vanished_is_dropped_and_the_gateway_goes_on(
    start: Callable[..., Gateway], context: Context, dispatcher: Dispatcher
) -> None:
    gateway = start()
    endpoint = gateway.bound_endpoints[0]
    gone = raw_dealer(context, endpoint)
    gone.send(request("exec", "in-flight", {"workspace_id": "ws_1", "cmd": "true"}))
    poll_until(lambda: bool(dispatcher.deferred), timeout_s=10)
    gone.close()  # mid-flight: its reply comes after it left
    outbox = Outbox(context, gateway._outbox_endpoint)
    try:

        def answered_into_the_void() -> bool:
            # Answered again until the ROUTER has noticed the disconnection: from then on,
            # ROUTER_MANDATORY makes the send fail (EHOSTUNREACH) instead of queueing it.
            outbox.reply(dispatcher.deferred[0], {"exit_code": 0})
            return gateway.dropped_replies > 0

        poll_until(answered_into_the_void, timeout_s=10, every_s=0.05)
    finally:
        outbox.close()
    with Client(endpoint, TOKEN, context=context, timeout_s=10) as other:
        assert other.ping() == {"version": "test"}


def test_a_frame_beyond_the_size_limit_drops_only_that_connection(
    start: Callable[..., Gateway], context: Context
) -> None:
    gateway = start(max_request_bytes=64 << 10)  # MAXMSGSIZE: twice that
    endpoint = gateway.bound_endpoints[0]
    offender = raw_dealer(context, endpoint)
    monitor = offender.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    try:
        assert monitor.poll(10_000) and recv_monitor_message(monitor)["event"] == zmq.EVENT_CONNECTED
        with Client(endpoint, TOKEN, context=context, timeout_s=10) as other:
            offender.send(request("ping", "huge", {"pad": b"x" * (256 << 10)}))
            assert monitor.poll(10_000), "the server kept the connection"
            assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
            assert other.ping() == {"version": "test"}
        # The offender reconnects on its own and is served like anyone else.
        offender.send(request("ping", "small"))
        assert offender.poll(10_000)
        reply = msgspec.msgpack.decode(offender.recv())
        assert (reply["id"], reply["ok"]) == ("small", True)
    finally:
        offender.disable_monitor()
        monitor.close()
        offender.close()


def test_a_request_between_the_limit_and_the_frame_limit_still_gets_bad_request(
    start: Callable[..., Gateway], context: Context
) -> None:
    gateway = start(max_request_bytes=64 << 10)
    sock = raw_dealer(context, gateway.bound_endpoints[0])
    try:
        sock.send(request("ping", "big", {"pad": b"x" * (80 << 10)}))
        assert sock.poll(10_000)
        reply = msgspec.msgpack.decode(sock.recv())
        assert reply["error"]["code"] == "bad_request"
        assert "exceeds the limit of 65536" in reply["error"]["message"]
    finally:
        sock.close()


def test_the_token_is_compared_in_constant_time_for_right_and_wrong_tokens(
    start: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    import runtime.wire.gateway as gateway_module

    compared: list[tuple[bytes, bytes]] = []
    real = gateway_module.hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(gateway_module.hmac, "compare_digest", recording)
    gateway = start()
    with Client(gateway.bound_endpoints[0], TOKEN, timeout_s=5) as client:
        client.ping()
    with Client(gateway.bound_endpoints[0], "w" * 32, timeout_s=5) as client, pytest.raises(Unauthorized):
        client.ping()
    assert (TOKEN.encode(), TOKEN.encode()) in compared
    assert (b"w" * 32, TOKEN.encode()) in compared
