"""Threshold alerts: one per condition, raised once and cleared once.

``AlertBoard`` keeps one alert per condition key: crossing the threshold raises it once,
falling back below ``threshold * (1 - hysteresis)`` clears it once, so a value hovering
at the line does not flood subscribers. Its ``evaluate`` returns the event to publish,
or ``None`` when nothing changed.
"""

from __future__ import annotations

import threading
import time
from typing import TypeVar

import msgspec

from runtime.messages import AlertCleared, AlertRaised

__all__ = ["AlertBoard"]

AlertT = TypeVar("AlertT", AlertRaised, AlertCleared)


class AlertBoard:
    """Active alerts by condition key.

    Args:
        hysteresis: Fraction below the threshold a value must fall to clear an alert.
    """

    def __init__(self, hysteresis: float = 0.05) -> None:
        self._hysteresis = hysteresis
        self._lock = threading.Lock()
        self._active: dict[str, AlertRaised] = {}

    def evaluate(
        self,
        key: str,
        *,
        resource: str,
        value: float,
        threshold: float,
        limit: float,
        message: str,
        workspace_id: str | None = None,
    ) -> AlertRaised | AlertCleared | None:
        """Raise ``key`` when ``value >= threshold``, clear it when well below again."""

        def event(kind: type[AlertT]) -> AlertT:
            return kind(
                key=key,
                resource=resource,
                message=message,
                value=value,
                limit=limit,
                workspace_id=workspace_id,
                threshold=threshold,
            )

        with self._lock:
            active = self._active.get(key)
            if active is None and value >= threshold:
                raised = event(AlertRaised)
                self._active[key] = msgspec.structs.replace(raised, ts=time.time())
                return raised
            if active is not None and value < threshold * (1 - self._hysteresis):
                del self._active[key]
                return event(AlertCleared)
            return None

    def clear(self, key: str, message: str) -> AlertCleared | None:
        """Clear ``key`` whatever the value (its subject is gone); ``None`` if not active."""
        with self._lock:
            active = self._active.pop(key, None)
        if active is None:
            return None
        return AlertCleared(
            key=key,
            resource=active.resource,
            message=message,
            value=0.0,
            limit=active.limit,
            workspace_id=active.workspace_id,
            threshold=active.threshold,
        )

    def active(self) -> list[AlertRaised]:
        """Every active alert, oldest first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda alert: alert.ts)
