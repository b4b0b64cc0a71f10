"""Following the runtime's state: its events in ``seq`` order, re-synced by ``snapshot`` after a gap.

Every event the state log records (workspace state changes, alerts, provider health,
actor crashes, GitHub and MCP events) carries one ``seq`` that goes up by one across all
of their topics. ``watch`` subscribes to all of those topics (a subset would look like a
gap at every event of another topic), then takes a ``snapshot`` (the live workspaces and
the ``seq`` they reflect), then yields the events after it, in order, keeping only the
topics asked for. When an event is missing (ZeroMQ dropped it at a slow reader's
high-water mark, or the client was away), it yields a fresh ``Snapshot`` and goes on after
its ``seq``; duplicates are dropped. A snapshot re-syncs the workspaces; the other events
of a gap are not replayed over ZeroMQ (the HTTP event stream replays them from the state
log with ``Last-Event-ID``). Like ``Subscriber``, a ``Watch`` is live once constructed.

::

    with Client(endpoint, token) as client, Watch(client, events_endpoint, topics=("workspace",)) as watch:
        for item in watch:
            if isinstance(item, Snapshot):
                records = {record.id: record for record in item.workspaces}  # start over
            else:
                ...  # item is an event map: item["type"], item["seq"], ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import zmq

from runtime.errors import Timeout
from runtime.messages import LOG_TOPICS, Snapshot
from runtime.wire.client import Client

__all__ = ["Watch"]


class Watch:
    """A ``Snapshot``, then the events of ``topics`` in ``seq`` order (a ``Snapshot`` again after a gap).

    Args:
        client: Takes the snapshots (used from the iterating thread only).
        events_endpoint: The runtime's event endpoint.
        topics: The state-log topics to yield (``LOG_TOPICS``: all).
        after: The last ``seq`` already seen: start there without a snapshot (a gap
            after it, if any, is re-synced like any other).
        context: The ZeroMQ context (required for ``inproc://``).
        stop: Ends the iteration once set (checked every ``idle_s``).
        idle_s: How long to wait for an event before checking ``stop``.

    Raises:
        ValueError: A topic is not one of the state log's.
    """

    def __init__(
        self,
        client: Client,
        events_endpoint: str,
        *,
        topics: tuple[str, ...] = LOG_TOPICS,
        after: int | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        stop: threading.Event | None = None,
        idle_s: float = 1.0,
    ) -> None:
        unknown = sorted(set(topics) - set(LOG_TOPICS))
        if unknown:
            raise ValueError(f"not state-log topics: {', '.join(unknown)} (topics: {', '.join(LOG_TOPICS)})")
        self._client = client
        self._topics = frozenset(topics)
        self._last = after
        self._stop = stop or threading.Event()
        self._idle_s = idle_s
        # With the client's credentials; subscribed before any snapshot is taken.
        self._events = client.subscribe(events_endpoint, LOG_TOPICS, context=context)

    def __iter__(self) -> Iterator[Snapshot | dict[str, Any]]:
        if self._last is None:
            yield self._resync()
        while not self._stop.is_set():
            try:
                topic, event = self._events.recv(self._idle_s)
            except Timeout:
                continue
            seq = event.get("seq")
            last = self._last or 0
            if topic not in LOG_TOPICS or not isinstance(seq, int) or seq <= last:
                continue  # another stream's event (exec.* topics are not sequenced here), or one already had
            if seq > last + 1:
                yield self._resync()
                if seq <= (self._last or 0):
                    continue
            self._last = seq
            if topic in self._topics:
                yield event

    def _resync(self) -> Snapshot:
        snapshot = self._client.snapshot()
        self._last = max(self._last or 0, snapshot.seq)
        return snapshot

    @property
    def last_seq(self) -> int | None:
        """The ``seq`` of the last event (or snapshot) taken into account."""
        return self._last

    def close(self) -> None:
        """Stop iterating and close the subscription."""
        self._stop.set()
        self._events.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
