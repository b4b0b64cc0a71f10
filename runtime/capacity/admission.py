"""Admission control: ``WORKSPACE_MAX_CONCURRENT`` enforced atomically.

A slot is reserved before anything is created and released when the workspace ends
(``destroyed`` or ``failed``). Reservation is a check-and-add under one lock, so
concurrent creates cannot overshoot the limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from runtime.errors import CapacityExceeded

__all__ = ["Admission"]


class Admission:
    """The set of workspaces holding a slot.

    Args:
        limit: The most workspaces that may be active at once.
        active: Workspaces already active (e.g. found in the state log at start).
    """

    def __init__(self, limit: int, active: Iterable[str] = ()) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._active = set(active)

    @property
    def limit(self) -> int:
        """The configured maximum."""
        return self._limit

    def reserve(self, workspace_id: str) -> None:
        """Take a slot for ``workspace_id`` (idempotent).

        Raises:
            CapacityExceeded: Every slot is taken.
        """
        with self._lock:
            self._reserve(workspace_id)

    def _reserve(self, workspace_id: str) -> None:
        if workspace_id not in self._active:
            if len(self._active) >= self._limit:
                raise CapacityExceeded(
                    f"{len(self._active)} workspaces are active, the limit (WORKSPACE_MAX_CONCURRENT) is "
                    f"{self._limit}: destroy unused workspaces or raise the limit"
                )
            self._active.add(workspace_id)

    def swap(self, old: str, new: str) -> None:
        """Hand ``old``'s slot to ``new`` (evicting a pool member for a create).

        Raises:
            CapacityExceeded: ``old`` held no slot (it ended meanwhile) and every slot is taken.
        """
        with self._lock:
            if old not in self._active:
                self._reserve(new)
                return
            self._active.discard(old)
            self._active.add(new)

    def release(self, workspace_id: str) -> None:
        """Free the slot of ``workspace_id`` (no-op if it holds none)."""
        with self._lock:
            self._active.discard(workspace_id)

    def count(self) -> int:
        """How many slots are taken."""
        with self._lock:
            return len(self._active)
