"""How the long-running commands (``serve``, ``firecracker-manager``) learn they should stop."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["stop_on_signals"]

log = logging.getLogger("runtime.cli")


def stop_on_signals(consequence: str = "") -> threading.Event:
    """An event set by ``SIGINT`` or ``SIGTERM``, each logged with ``consequence`` (e.g. what keeps running)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping%s", signal.Signals(signum).name, consequence)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop
