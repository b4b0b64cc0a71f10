"""The Subscriber against a real XPUB socket that greets each subscriber with WELCOME.

The socket admits subscribers as the Gateway's does: PLAIN, the token as password, checked by
the ``Doorkeeper`` over ZAP.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from runtime.errors import Timeout
from runtime.messages import WELCOME, encode
from runtime.wire import Subscriber
from runtime.wire.zap import ZAP_ENDPOINT, Doorkeeper

Context = zmq.Context[zmq.Socket[bytes]]
TOKEN = "s" * 32


class EventSocket:
    """An XPUB socket served by one thread, as the Gateway serves its event socket.

    ``send`` queues frames for the thread to publish; subscription messages the socket
    reads are kept in ``subscriptions`` (``b"\\x01topic"``, ``b"\\x00topic"``).
    """

    def __init__(self, context: Context, welcome: bytes | None = WELCOME) -> None:
        self._zap = context.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.bind(ZAP_ENDPOINT)
        self._doorkeeper = Doorkeeper(TOKEN)
        self._socket = context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.PLAIN_SERVER, 1)
        if welcome is not None:
            self._socket.setsockopt(zmq.XPUB_WELCOME_MSG, welcome)
        self._socket.bind("tcp://127.0.0.1:*")
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.subscriptions: queue.Queue[bytes] = queue.Queue()
        self._outgoing: queue.Queue[list[bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-xpub")
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                self._doorkeeper.serve(self._zap)
                if self._socket.poll(5):
                    self.subscriptions.put(self._socket.recv())
                while True:
                    try:
                        frames = self._outgoing.get_nowait()
                    except queue.Empty:
                        break
                    self._socket.send_multipart(frames)
        finally:
            self._socket.close()
            self._zap.close()

    def send(self, *frames: bytes) -> None:
        self._outgoing.put(list(frames))

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        self.send(topic.encode(), encode(event))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture
def publisher(context: Context) -> Iterator[EventSocket]:
    pub = EventSocket(context)
    try:
        yield pub
    finally:
        pub.stop()


def test_an_event_published_right_after_construction_is_received(publisher: EventSocket, context: Context) -> None:
    for n in range(20):  # without waiting for the welcome, ZeroMQ's slow joiner would lose some
        with Subscriber(publisher.endpoint, ("workspace",), token=TOKEN, context=context, join_timeout_s=5) as events:
            publisher.publish("workspace", {"type": "workspace.state", "seq": n})
            assert events.recv(5) == ("workspace", {"type": "workspace.state", "seq": n})


def test_the_constructor_returns_once_welcomed_not_at_its_join_timeout(
    publisher: EventSocket, context: Context
) -> None:
    started = time.monotonic()
    with Subscriber(publisher.endpoint, token=TOKEN, context=context, join_timeout_s=30):
        assert time.monotonic() - started < 10


def test_without_a_welcome_the_constructor_gives_up_after_its_join_timeout(context: Context) -> None:
    silent = EventSocket(context, welcome=None)
    try:
        started = time.monotonic()
        with Subscriber(silent.endpoint, token=TOKEN, context=context, join_timeout_s=0.2):
            assert time.monotonic() - started >= 0.18  # it waited (ZeroMQ polls in whole milliseconds)
    finally:
        silent.stop()


def test_recv_returns_the_topic_and_the_decoded_event(publisher: EventSocket, context: Context) -> None:
    event = {"type": "exec.output", "seq": 3, "data": b"\x00\xff", "ts": 1.5, "nested": {"a": [1, None]}}
    with Subscriber(publisher.endpoint, token=TOKEN, context=context, join_timeout_s=5) as events:
        publisher.publish("exec.ws_1.p1", event)
        topic, received = events.recv(5)
    assert topic == "exec.ws_1.p1"
    assert received == event


def test_only_the_subscribed_topic_prefixes_are_received(publisher: EventSocket, context: Context) -> None:
    with Subscriber(
        publisher.endpoint, ("exec.ws_1.", "alert"), token=TOKEN, context=context, join_timeout_s=5
    ) as events:
        publisher.publish("workspace", {"seq": 1})
        publisher.publish("exec.ws_2.p1", {"seq": 2})
        publisher.publish("exec.ws_1.p1", {"seq": 3})
        publisher.publish("actor", {"seq": 4})
        publisher.publish("alert", {"seq": 5})
        assert events.recv(5) == ("exec.ws_1.p1", {"seq": 3})
        assert events.recv(5) == ("alert", {"seq": 5})


def test_the_subscriber_asks_for_its_topics_and_drops_the_welcome_subscription(
    publisher: EventSocket, context: Context
) -> None:
    with Subscriber(publisher.endpoint, ("workspace",), token=TOKEN, context=context, join_timeout_s=5):
        seen = [publisher.subscriptions.get(timeout=5) for _ in range(3)]
    assert seen[:2] in ([b"\x01workspace", b"\x01" + WELCOME], [b"\x01" + WELCOME, b"\x01workspace"])
    assert seen[2] == b"\x00" + WELCOME


def test_a_welcome_is_never_returned_by_recv(publisher: EventSocket, context: Context) -> None:
    with Subscriber(publisher.endpoint, token=TOKEN, context=context, join_timeout_s=5) as events:  # every topic
        publisher.send(WELCOME)  # as another subscriber's welcome would reach a catch-all subscription
        publisher.send(WELCOME, encode({"seq": 0}))  # but two frames are an event
        publisher.publish("workspace", {"seq": 1})
        assert events.recv(5) == (WELCOME.decode(), {"seq": 0})
        assert events.recv(5) == ("workspace", {"seq": 1})


def test_recv_times_out_when_nothing_arrives(publisher: EventSocket, context: Context) -> None:
    with (
        Subscriber(publisher.endpoint, token=TOKEN, context=context, join_timeout_s=5) as events,
        pytest.raises(Timeout) as caught,
    ):
        events.recv(0.1)
    assert caught.value.message == "no event within 0.1 s"
    assert caught.value.retryable is True
