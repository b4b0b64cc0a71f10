"""Test helpers: waiting on events and conditions with deadlines instead of sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.client import Subscriber


def wait_for_event(
    events: Subscriber, match: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
) -> dict[str, Any]:
    """The first event satisfying ``match`` within ``timeout_s`` (others are skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the expected event never came"
        _, event = events.recv(remaining)
        if match(event):
            return event


def workspace_event(workspace_id: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A matcher for events about ``workspace_id`` whose ``fields`` have the given values."""

    def match(event: dict[str, Any]) -> bool:
        return event.get("workspace_id") == workspace_id and all(event.get(k) == v for k, v in fields.items())

    return match


def poll_until(condition: Callable[[], bool], timeout_s: float = 60.0, every_s: float = 0.05) -> None:
    """Re-check ``condition`` until it holds; fail after ``timeout_s`` (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        pause.wait(every_s)
