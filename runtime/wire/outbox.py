"""The way actors and the state log hand replies and events to the Gateway.

The Gateway is the only owner of the ROUTER and PUB sockets (ZeroMQ sockets are not
thread-safe). Every other thread that needs to answer a client or publish an event
creates its own ``Outbox`` - an inproc PUSH socket to the Gateway's PULL - in that thread,
and closes it there.
"""

from __future__ import annotations

from typing import Any

import zmq

from runtime.errors import WorkspaceError
from runtime.messages import ErrorBody, ErrorReply, Event, OkReply, ReplyTo, encode

__all__ = ["ERROR", "KIND_EVENT", "KIND_REPLY", "OK", "RETRYABLE", "Outbox", "encode_error", "encode_ok", "outcome"]

KIND_REPLY = b"R"
KIND_EVENT = b"E"
# Reply frames carry the outcome: the Gateway keeps replies for retries except retryable
# errors, and counts errors in its metrics.
OK = b"0"
RETRYABLE = b"1"
ERROR = b"2"


def outcome(error: WorkspaceError | None) -> bytes:
    """The outcome frame of a reply (``OK``, ``RETRYABLE`` or ``ERROR``)."""
    if error is None:
        return OK
    return RETRYABLE if error.retryable else ERROR


def encode_ok(request_id: str, result: Any) -> bytes:
    """Encode a successful reply."""
    return encode(OkReply(request_id, result))


def encode_error(request_id: str, error: WorkspaceError) -> bytes:
    """Encode a failed reply from a ``WorkspaceError``."""
    return encode(ErrorReply(request_id, ErrorBody(error.code, error.message, error.retryable)))


class Outbox:
    """A PUSH socket to the Gateway; use it only in the thread that created it.

    Args:
        context: The runtime's ZeroMQ context (inproc needs the same one).
        endpoint: The Gateway's inproc PULL endpoint.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self._socket = context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.LINGER, 1000)
        self._socket.connect(endpoint)

    def reply(self, reply_to: ReplyTo, result: Any) -> None:
        """Send a successful reply to the client waiting on ``reply_to``."""
        reply = encode_ok(reply_to.request_id, result)
        self._socket.send_multipart([KIND_REPLY, reply_to.identity, reply_to.request_id.encode(), OK, reply])

    def fail(self, reply_to: ReplyTo, error: WorkspaceError) -> None:
        """Send a failed reply to the client waiting on ``reply_to``."""
        reply = encode_error(reply_to.request_id, error)
        frames = [KIND_REPLY, reply_to.identity, reply_to.request_id.encode(), outcome(error), reply]
        self._socket.send_multipart(frames)

    def publish(self, event: Event) -> None:
        """Publish an event on its topic."""
        self._socket.send_multipart([KIND_EVENT, event.topic.encode(), encode(event)])

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish an already encoded event on ``topic`` (streamed process output)."""
        self._socket.send_multipart([KIND_EVENT, topic.encode(), payload])

    def close(self) -> None:
        """Close the socket (pending messages get up to one second to leave)."""
        self._socket.close()
