"""A subscriber to the runtime's event stream (PUB), live once constructed.

The stream admits only subscribers that prove they know the token (ZeroMQ PLAIN at the
handshake) or, with CURVE, hold an admitted key: a subscriber refused gets no events at
all, and says so by timing out. Over ``inproc://`` no mechanism runs (same process).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import zmq

from runtime.errors import Timeout
from runtime.messages import WELCOME
from runtime.wire.keys import KeyPair
from runtime.wire.security import client_socket

__all__ = ["Subscriber"]


class Subscriber:
    """A SUB socket on the runtime's event stream, live once constructed.

    The runtime greets each new subscriber with a one-frame welcome message; the
    constructor waits for it (up to ``join_timeout_s``), so no event published after it
    returns is missed for want of a subscription still on its way (ZeroMQ's "slow
    joiner"). Welcome messages are never returned by ``recv``.

    Args:
        endpoint: The runtime's event endpoint.
        topics: Topic prefixes to receive (all by default).
        token: The runtime's token (sent by PLAIN when CURVE is not used).
        context: The ZeroMQ context; required for ``inproc://``.
        join_timeout_s: How long to wait for the welcome.
        server_key: With ``client_keys``, connect by CURVE: the server's public key (Z85).
        client_keys: This client's CURVE key pair (its public key admitted by the server).
    """

    def __init__(
        self,
        endpoint: str,
        topics: tuple[str, ...] = ("",),
        *,
        token: str,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        join_timeout_s: float = 10.0,
        server_key: bytes | None = None,
        client_keys: KeyPair | None = None,
    ) -> None:
        self._socket = client_socket(
            context or zmq.Context.instance(), zmq.SUB, server_key=server_key, client_keys=client_keys,
            plain_token=token,
        )  # fmt: skip
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.setsockopt(zmq.SUBSCRIBE, WELCOME)
        self._socket.connect(endpoint)
        deadline = time.monotonic() + join_timeout_s
        while (remaining := deadline - time.monotonic()) > 0 and self._socket.poll(max(1, int(remaining * 1000))):
            if len(self._socket.recv_multipart()) == 1:
                break  # welcomed: the subscription is in place
        self._socket.setsockopt(zmq.UNSUBSCRIBE, WELCOME)

    def recv(self, timeout_s: float = 10.0) -> tuple[str, dict[str, Any]]:
        """The next event as ``(topic, event)``.

        Raises:
            Timeout: Nothing arrived within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._socket.poll(max(1, int(remaining * 1000))):
                raise Timeout(f"no event within {timeout_s:g} s")
            frames = self._socket.recv_multipart()
            if len(frames) == 2:  # a welcome (one frame) when subscribed to every topic
                topic, payload = frames
                return topic.decode(), msgspec.msgpack.decode(payload)

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
