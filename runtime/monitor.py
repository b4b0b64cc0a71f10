"""What the runtime measures and alerts on: per-workspace usage and threshold alerts.

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

__all__ = ["AlertBoard", "Sweeps", "Usage", "UsageBoard"]

AlertT = TypeVar("AlertT", AlertRaised, AlertCleared)


class Usage(msgspec.Struct, frozen=True):
    """One workspace's latest measurements; each field is ``None`` until measured.

    Disk is measured by the provider's health check, CPU and memory by the sampler.
    ``cpu_pct`` and ``memory_pct`` are percentages of the workspace's own limits.
    """

    disk_used_bytes: int | None = None
    disk_bytes: int | None = None
    cpu_pct: float | None = None
    memory_bytes: int | None = None
    memory_pct: float | None = None
    measured_at: float = 0.0


class UsageBoard:
    """Latest usage by workspace id, written by measurers, read by anyone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage: dict[str, Usage] = {}

    def update(self, workspace_id: str, **measured: float | int | None) -> None:
        """Record new measurements of a workspace, keeping the others."""
        with self._lock:
            current = self._usage.get(workspace_id) or Usage()
            self._usage[workspace_id] = msgspec.structs.replace(current, measured_at=time.time(), **measured)

    def get(self, workspace_id: str) -> Usage | None:
        """The latest measurement of a workspace, if any."""
        with self._lock:
            return self._usage.get(workspace_id)

    def forget(self, workspace_id: str) -> None:
        """Drop a workspace that ended."""
        with self._lock:
            self._usage.pop(workspace_id, None)

    def all(self) -> dict[str, Usage]:
        """Every workspace's latest measurement."""
        with self._lock:
            return dict(self._usage)


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


class Sweeps:
    """What the reaper did, for ``stats``: last sweep, workspaces reaped, orphans removed."""

    def __init__(self, interval_s: float) -> None:
        self._lock = threading.Lock()
        self.interval_s = interval_s
        self.last_sweep_at: float | None = None
        self.sweeps = 0
        self.reaped = 0
        self.orphans = 0

    def swept(self, reaped: int) -> None:
        """A sweep ended, having sent ``reaped`` expired workspaces to be destroyed."""
        with self._lock:
            self.last_sweep_at = time.time()
            self.sweeps += 1
            self.reaped += reaped

    def orphan_removed(self) -> None:
        """An orphan container or volume was removed."""
        with self._lock:
            self.orphans += 1

    def as_dict(self) -> dict[str, float | int | None]:
        """The counters as plain data."""
        with self._lock:
            return {
                "interval_s": self.interval_s,
                "last_sweep_at": self.last_sweep_at,
                "sweeps": self.sweeps,
                "reaped": self.reaped,
                "orphans": self.orphans,
            }
