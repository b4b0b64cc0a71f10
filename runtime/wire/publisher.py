"""The publisher of streamed processes' events: one thread, one outbox, in order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from runtime.wire.outbox import Outbox

__all__ = ["Publisher"]


class Publisher:
    """One thread that publishes already encoded events through its own outbox, in order.

    Args:
        make_outbox: Creates the outbox (called in the publisher's thread).
        capacity: Events queued at most; ``publish`` blocks beyond (back-pressure).
    """

    def __init__(self, make_outbox: Callable[[], Outbox], capacity: int = 1024) -> None:
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(capacity)
        self._make_outbox = make_outbox
        self._thread = threading.Thread(target=self._run, name="process-events", daemon=True)
        self._thread.start()

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one event (blocks while the queue is full)."""
        self._queue.put((topic, payload))

    def close(self, timeout_s: float = 5.0) -> None:
        """Publish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        outbox = self._make_outbox()
        try:
            while (item := self._queue.get()) is not None:
                outbox.publish_raw(*item)
        finally:
            outbox.close()
