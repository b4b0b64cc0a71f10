"""The HTTP side's way into the runtime: the Gateway itself, over ``inproc://``.

Every HTTP request becomes one wire-protocol request sent through the same Gateway as a
ZeroMQ client's, with the caller's token: the same decoding, authentication, request
table (the ``Idempotency-Key`` is the request id, so a retried POST runs once), routing
and metrics. There is no second code path for any op. One DEALER socket per event loop
carries every request; a reader task hands each reply to the request waiting for its id.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from runtime.errors import ProviderUnavailable, Timeout
from runtime.messages import ArgsStruct, Reply, Request, decode_reply, encode

__all__ = ["IDENTITY", "GatewayBridge"]

IDENTITY = b"http-api"
"""The bridge's ROUTER identity: fixed, so a request retried with its key is recognised even
after the HTTP side restarted (``create`` stays exactly-once across runtime restarts)."""


_ABORTED = ProviderUnavailable(
    "the runtime stopped before this request finished; its outcome is unknown: check before retrying",
    retryable=False,
)


class GatewayBridge:
    """Requests to the Gateway from one asyncio event loop.

    Args:
        context: The runtime's ZeroMQ context (``inproc://`` needs the very same one).
        endpoint: The runtime's inproc request endpoint.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self._context = zmq.asyncio.Context.shadow(context.underlying)
        self._endpoint = endpoint
        self._socket: zmq.asyncio.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Reply]] = {}

    def _ensure(self) -> zmq.asyncio.Socket:
        loop = asyncio.get_running_loop()
        if self._socket is None or self._loop is not loop:
            self._close_socket()
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.ROUTING_ID, IDENTITY)
            socket.connect(self._endpoint)
            self._socket, self._loop = socket, loop
            self._reader = loop.create_task(self._read(socket))
        return self._socket

    async def _read(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frame = await socket.recv()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                reply = decode_reply(frame)
            except msgspec.DecodeError:
                continue
            waiting = self._waiting.pop(reply.id, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(reply)

    async def request(
        self,
        op: str,
        args: ArgsStruct | dict[str, Any] | None,
        token: str,
        *,
        request_id: str | None = None,
        timeout_s: float = 600.0,
    ) -> Reply:
        """Send one request and wait for its reply (a retry in flight waits for the same one).

        Raises:
            Timeout: No reply within ``timeout_s``.
            ProviderUnavailable: The runtime stopped before it answered.
        """
        request_id = request_id or f"h-{secrets.token_hex(8)}"
        socket = self._ensure()
        waiting = self._waiting.get(request_id)
        if waiting is None:  # the Gateway answers an in-flight duplicate with the first reply only
            waiting = self._waiting[request_id] = asyncio.get_running_loop().create_future()
            payload = Request(request_id, op, token, msgspec.Raw(encode({} if args is None else args)))
            await socket.send(encode(payload))
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout_s)
        except TimeoutError:
            self._waiting.pop(request_id, None)
            raise Timeout(f"no reply to {op} within {timeout_s:g} s") from None

    def _close_socket(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(_ABORTED)
        self._waiting.clear()

    def close(self) -> None:
        """Close the socket (call from the event loop that used it)."""
        self._close_socket()
