"""The event-stream routes: ``/events`` and a streamed process's ``/events`` (and MCP's, through ``respond``).

Both check the token through the Gateway (a ``ping`` with it) before the stream starts,
subscribe to the runtime's PUB socket over ``inproc://``, then replay what a reconnecting
client missed (``Last-Event-ID``) and go on live (``sse``). ``end`` closes every open
stream, so the server stops without waiting for clients to hang up.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import msgspec
import zmq

from runtime.errors import WorkspaceError
from runtime.http.bridge import GatewayBridge
from runtime.http.responses import Asked, Send, error, refused
from runtime.http.sse import LOG_TOPICS, Stream, process_stream, subscribe, workspace_stream
from runtime.messages import AnyEvent, process_topic

__all__ = ["EventSource", "StreamRoutes"]

_ASK_TIMEOUT_S = 30.0
_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]


class EventSource(Protocol):
    """Where the streams read events: the runtime's PUB socket and its state log."""

    inproc_events_endpoint: str

    @property
    def zmq_context(self) -> zmq.Context[zmq.Socket[bytes]]:
        """The runtime's ZeroMQ context (``inproc://`` needs it)."""
        ...

    def events_after(self, seq: int, limit: int) -> list[AnyEvent]:
        """Up to ``limit`` of the state log's events with a higher ``seq``, oldest first."""
        ...


class StreamRoutes:
    """Server-sent event streams of one runtime, served on one event loop."""

    def __init__(self, source: EventSource, bridge: GatewayBridge) -> None:
        self._source = source
        self._bridge = bridge
        self._open: set[asyncio.Task[Any]] = set()
        self._ending = False

    async def events(self, send: Send, asked: Asked) -> None:
        """``GET /api/v1/agent/workspaces/events?topics=a,b`` (every recorded topic by default)."""
        if not await self._authorized(send, asked):
            return
        wanted = [topic for value in asked.query.get("topics", []) for topic in value.split(",") if topic]
        unknown = sorted(set(wanted) - set(LOG_TOPICS))
        if unknown:
            await error("bad_request", f"no such topic: {', '.join(unknown)} (topics: {', '.join(LOG_TOPICS)})").send(
                send
            )
            return
        topics = tuple(wanted) or LOG_TOPICS
        socket = await subscribe(self._source.zmq_context, self._source.inproc_events_endpoint, topics)
        await self.respond(send, workspace_stream(socket, topics, asked.last_event_id(), self._source.events_after))

    async def process_events(self, send: Send, asked: Asked, workspace_id: str, process_id: str) -> None:
        """``GET …/{workspace_id}/exec/{process_id}/events``: output, then the exit; the stream ends there."""
        if not await self._authorized(send, asked):
            return
        after = asked.last_event_id() or 0
        topic = process_topic(workspace_id, process_id)
        socket = await subscribe(self._source.zmq_context, self._source.inproc_events_endpoint, (topic,))
        args = {"workspace_id": workspace_id, "process_id": process_id, "after": after}
        try:  # subscribed first: nothing published after this page is missed
            reply = await self._bridge.request("exec_output", args, asked.token, timeout_s=_ASK_TIMEOUT_S)
        except WorkspaceError as exc:
            socket.close()
            await error(exc.code, exc.message, exc.retryable).send(send)
            return
        except BaseException:
            socket.close()
            raise
        if not reply.ok:  # an unknown workspace or process, before the stream starts
            socket.close()
            await refused(reply.error).send(send)
            return
        await self.respond(send, process_stream(socket, after, msgspec.msgpack.decode(reply.result)))

    def end(self) -> None:
        """End every open stream (call on the serving event loop, before it stops)."""
        self._ending = True
        for task in self._open:
            task.cancel()

    async def ended(self, timeout_s: float) -> None:
        """End every open stream and wait until their sockets are closed."""
        self.end()
        if self._open:
            await asyncio.wait(list(self._open), timeout=timeout_s)

    async def _authorized(self, send: Send, asked: Asked) -> bool:
        """Whether the caller's token is the runtime's (the Gateway judges); answers the refusal if not."""
        try:
            reply = await self._bridge.request("ping", None, asked.token, timeout_s=_ASK_TIMEOUT_S)
        except WorkspaceError as exc:
            await error(exc.code, exc.message, exc.retryable).send(send)
            return False
        if not reply.ok:
            await refused(reply.error).send(send)
        return reply.ok

    async def respond(self, send: Send, chunks: Stream) -> None:
        """Send ``chunks`` as a server-sent event stream, one of those ``end`` ends."""
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._ending:
                raise
            task.uncancel()  # ended by `end`: finish the response
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client went away
        finally:
            self._open.discard(task)
            await chunks.aclose()
