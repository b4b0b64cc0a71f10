"""A daemon thread that calls back every ``interval`` seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Ticker"]

log = logging.getLogger(__name__)


class Ticker:
    """Calls ``callback`` every ``interval`` seconds on its own thread.

    The callback should only hand work off (e.g. tell an actor); if it raises, the
    ticker stops, which is how it learns that its actor is gone.
    """

    def __init__(self, interval: float, callback: Callable[[], None], name: str) -> None:
        self._interval = interval
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        """Start ticking (the first tick comes after one interval)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking; returns at once."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._callback()
            except Exception:
                log.debug("%s stops: its callback failed", self._thread.name, exc_info=True)
                return
