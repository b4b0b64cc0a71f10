"""What every provider adapter offers, and the shared board of provider health.

Adapters are blocking and thread-safe: actors call them from worker threads, never from
their own mailbox loop. They raise only ``WorkspaceError`` families, translating their
backend's exceptions at this boundary.
"""

from __future__ import annotations

import threading
from typing import Protocol

import msgspec

from runtime.messages import ExecResult, WorkspaceSpec

__all__ = [
    "LABEL_ID",
    "LABEL_INSTANCE",
    "LABEL_MANAGED",
    "Probe",
    "Provider",
    "ProviderBoard",
    "ProviderStatus",
]

LABEL_MANAGED = "agent-workspaces.managed"
LABEL_ID = "agent-workspaces.id"
LABEL_INSTANCE = "agent-workspaces.instance"


class Probe(msgspec.Struct, frozen=True):
    """One health check's outcome.

    Attributes:
        healthy: Whether the provider can create and run workspaces now.
        runtime: The isolation runtime it uses (``runsc``, ``runc``, ``firecracker``, ``e2b``).
        detail: Why it is unhealthy, or notes an operator should know (e.g. a fallback).
    """

    healthy: bool
    runtime: str
    detail: str = ""


class ProviderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as the ``providers`` op reports it."""

    name: str
    healthy: bool
    checked_at: float
    detail: str
    runtime: str
    workspaces: int = 0


class Provider(Protocol):
    """A blocking adapter to one isolation backend."""

    name: str

    def probe(self) -> Probe:
        """Check that the backend can serve workspaces now."""
        ...

    def create(self, spec: WorkspaceSpec) -> str:
        """Create and start a workspace; return the provider's handle for it."""
        ...

    def exec(
        self,
        handle: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        timeout_s: float | None,
    ) -> ExecResult:
        """Run ``argv`` in the workspace and wait for it (or its timeout)."""
        ...

    def destroy(self, handle: str) -> None:
        """Remove the workspace and its storage; a missing workspace is not an error."""
        ...


class ProviderBoard:
    """The latest status of every provider, written by ProviderActors, read by anyone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: dict[str, ProviderStatus] = {}

    def update(self, status: ProviderStatus) -> bool:
        """Record ``status``; return whether health or detail changed."""
        with self._lock:
            previous = self._statuses.get(status.name)
            self._statuses[status.name] = status
        return previous is None or (previous.healthy, previous.detail) != (status.healthy, status.detail)

    def get(self, name: str) -> ProviderStatus | None:
        """The latest status of ``name``, if it was ever checked."""
        with self._lock:
            return self._statuses.get(name)

    def all(self) -> list[ProviderStatus]:
        """Every provider's latest status, by name."""
        with self._lock:
            return sorted(self._statuses.values(), key=lambda status: status.name)
