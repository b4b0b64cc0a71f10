"""Server-sent events: the runtime's event stream, and a streamed process's output, over HTTP.

Each stream subscribes to the runtime's PUB socket (over ``inproc://``) and waits for its
welcome before anything else, so nothing published afterwards is missed. A client that
reconnects with ``Last-Event-ID`` first gets what it missed: the state log's events after
that ``seq`` (for the event stream), or the process's kept output after it (through the
``exec_output`` op); live events already replayed are skipped, so the ids it sees go up
without a gap. Every event is ``id: <seq>``, ``event: <type>``, ``data: <JSON>``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from runtime.messages import LOG_TOPICS, WELCOME, AnyEvent, ProcessOutput

__all__ = ["LOG_TOPICS", "Render", "Stream", "frame", "process_stream", "subscribe", "workspace_stream"]

_REPLAY_PAGE = 500
_JOIN_TIMEOUT_S = 10.0
_KEEPALIVE_S = 15.0

Stream = AsyncGenerator[bytes, None]
Render = Callable[[dict[str, Any]], bytes | None]
"""An event as the bytes a stream sends of it, or ``None`` to leave it out (``frame`` by default)."""


def frame(event: dict[str, Any]) -> bytes:
    """One event as a server-sent event."""
    data = msgspec.json.encode(event).decode()
    return f"id: {event.get('seq', '')}\nevent: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


async def subscribe(
    context: zmq.Context[zmq.Socket[bytes]],
    endpoint: str,
    topics: Iterable[str],
    *,
    options: Iterable[tuple[int, bytes]] = (),
) -> Any:
    """A SUB socket on the event stream, its subscriptions in place (the welcome came).

    ``options`` are set before it connects: its security (``runtime.wire.security``) when
    it subscribes over the network; ``inproc://`` needs none.
    """
    socket = zmq.asyncio.Context.shadow(context.underlying).socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    for option, value in options:
        socket.setsockopt(option, value)
    for topic in topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    socket.setsockopt(zmq.SUBSCRIBE, WELCOME)
    socket.connect(endpoint)
    try:
        async with asyncio.timeout(_JOIN_TIMEOUT_S):
            while len(await socket.recv_multipart()) != 1:
                pass
    except TimeoutError:
        pass  # the stream is still usable; only the very first events could be missed
    socket.setsockopt(zmq.UNSUBSCRIBE, WELCOME)
    return socket


async def _live(socket: Any) -> AsyncGenerator[tuple[str, dict[str, Any]] | None, None]:
    """Events as they come; ``None`` after every quiet ``_KEEPALIVE_S`` (to keep the connection up).

    Ends when the runtime's ZeroMQ context is terminated under it.
    """
    while True:
        try:
            frames = await asyncio.wait_for(socket.recv_multipart(), _KEEPALIVE_S)
        except TimeoutError:
            yield None
            continue
        except zmq.ZMQError:
            return
        if len(frames) == 2:
            yield frames[0].decode(), msgspec.msgpack.decode(frames[1])


async def _live_after(socket: Any, sent: int, until: str | None = None, render: Render = frame) -> Stream:
    """Live events with a ``seq`` above ``sent`` (older ones were replayed), up to one of type ``until``."""
    async with contextlib.aclosing(_live(socket)) as events:
        async for item in events:
            if item is None:
                yield b": keep-alive\n\n"
                continue
            _, event = item
            if int(event.get("seq", 0)) <= sent:
                continue
            sent = int(event["seq"])
            chunk = render(event)
            if chunk is not None:
                yield chunk
            if event.get("type") == until:
                return


async def workspace_stream(
    socket: Any,
    topics: tuple[str, ...],
    last_seq: int | None,
    replay: Callable[[int, int], list[AnyEvent]],
    render: Render = frame,
) -> Stream:
    """The event stream from ``socket``, after replaying the state log's events past ``last_seq``.

    ``replay(after, limit)`` reads the state log (in pages, off the event loop); ``render``
    makes each event (replayed or live) the bytes sent, or leaves it out.
    """
    try:
        sent = last_seq if last_seq is not None else -1
        while last_seq is not None:
            page = await asyncio.to_thread(replay, sent, _REPLAY_PAGE)
            for event in page:
                sent = event.seq
                chunk = render(msgspec.to_builtins(event)) if event.topic in topics else None
                if chunk is not None:
                    yield chunk
            if len(page) < _REPLAY_PAGE:
                break
        async with contextlib.aclosing(_live_after(socket, sent, render=render)) as live:
            async for chunk in live:
                yield chunk
    finally:
        socket.close()


async def process_stream(socket: Any, last_seq: int, page: dict[str, Any]) -> Stream:
    """A streamed process's output: ``page`` (its ``exec_output`` past ``last_seq``), then ``socket``'s.

    Ends with the process's exit event. ``socket`` was subscribed before ``page`` was read.
    """
    try:
        sent = last_seq
        ids = {name: page["process"][name] for name in ("workspace_id", "process_id")}
        if page["truncated"]:
            sent += page["truncated"]
            yield frame({"type": "exec.truncated", "seq": sent, **ids, "missed": page["truncated"]})
        for chunk in page["chunks"]:
            if chunk["seq"] > sent:
                sent = chunk["seq"]
                yield frame(msgspec.to_builtins(ProcessOutput(**ids, **chunk)))
        if page["exit"] is not None:
            yield frame(page["exit"])
            return
        async with contextlib.aclosing(_live_after(socket, sent, until="exec.exit")) as live:
            async for chunk in live:
                yield chunk
    finally:
        socket.close()
