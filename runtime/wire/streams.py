"""Following a streamed process from a client: its output in order, then its exit.

Subscribe to the workspace's process events *before* starting the process, so nothing
it prints first is missed::

    with client.subscribe(events_endpoint, (exec_topic_prefix(workspace_id),)) as events:
        process = client.spawn(workspace_id, "make test")
        for event in follow(client, events, process):
            ...  # ProcessOutput (stream, data), Truncated, then ProcessExited

Events carry the process's own ``seq`` (1, 2, ...). ``follow`` yields them in that order;
when one is missing (a late subscription, or ZeroMQ dropped it for a slow reader) or the
stream has been quiet for ``idle_s``, it asks the runtime for what it kept
(``exec_output``) and goes on; output the runtime no longer keeps is reported as one
``Truncated`` event rather than skipped silently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from runtime.errors import Timeout
from runtime.messages import (
    OutputPage,
    ProcessExited,
    ProcessInfo,
    ProcessOutput,
    StreamEvent,
    Truncated,
    exec_topic_prefix,
)
from runtime.wire.client import Client
from runtime.wire.subscriber import Subscriber

__all__ = ["StreamEvent", "Truncated", "exec_topic_prefix", "follow"]


def _event(raw: dict[str, Any]) -> ProcessOutput | ProcessExited | None:
    kind = raw.get("type")
    if kind == "exec.output":
        return msgspec.convert(raw, ProcessOutput)
    if kind == "exec.exit":
        return msgspec.convert(raw, ProcessExited)
    return None


def follow(
    client: Client,
    events: Subscriber,
    process: ProcessInfo,
    *,
    idle_s: float = 1.0,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[StreamEvent]:
    """Yield the process's output in order, then its exit (see the module docstring).

    ``stop``, once set, ends the iteration early (within ``idle_s``).

    Raises:
        Timeout: ``timeout_s`` passed before the process ended.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    expected = 1
    heard = time.monotonic()  # when this process last had news
    while stop is None or not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"process {process.process_id} did not end within {timeout_s:g} s")
        try:
            topic, raw = events.recv(idle_s)
        except Timeout:
            pass  # quiet: check with the runtime (the exit itself may have been missed)
        else:
            event = _event(raw) if topic == process.topic else None
            if event is None or event.seq < expected:
                if time.monotonic() - heard < idle_s:
                    continue  # another process's event, or one already had
            elif event.seq == expected:
                yield event
                expected += 1
                heard = time.monotonic()
                if isinstance(event, ProcessExited):
                    return
                continue
        heard = time.monotonic()
        page = client.exec_output(process.workspace_id, process.process_id, after=expected - 1)
        for item in _catch_up(page, expected, process.process_id):
            yield item
            if isinstance(item, Truncated):
                expected += item.missed
            else:
                expected = item.seq + 1
            if isinstance(item, ProcessExited):
                return


def _catch_up(page: OutputPage, expected: int, process_id: str) -> Iterator[StreamEvent]:
    if page.truncated:
        yield Truncated(process_id=process_id, missed=page.truncated)
        expected += page.truncated
    for chunk in page.chunks:
        if chunk.seq >= expected:
            yield ProcessOutput(
                seq=chunk.seq, ts=chunk.ts, workspace_id=page.process.workspace_id, process_id=process_id,
                stream=chunk.stream, data=chunk.data,
            )  # fmt: skip
    if page.exit is not None:
        yield page.exit
