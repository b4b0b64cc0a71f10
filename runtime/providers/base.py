"""What every provider adapter offers, and the shared board of provider health.

Adapters are blocking and thread-safe: actors call them from worker threads, never from
their own mailbox loop. They raise only ``WorkspaceError`` families, translating their
backend's exceptions at this boundary.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

import msgspec

from runtime.messages import ContainerEvent, ExecResult, WorkspaceSpec
from runtime.providers.cgroups import ResourceUsage

__all__ = [
    "LABEL_ID",
    "LABEL_INSTANCE",
    "LABEL_MANAGED",
    "OUTPUT_LIMIT",
    "BackendState",
    "EventWatch",
    "Probe",
    "ProcessSink",
    "Provider",
    "ProviderBoard",
    "ProviderStatus",
    "ResourceUsage",
]

LABEL_MANAGED = "agent-workspaces.managed"
LABEL_ID = "agent-workspaces.id"
LABEL_INSTANCE = "agent-workspaces.instance"
OUTPUT_LIMIT = 8 << 20
"""Bytes of stdout (and of stderr) an exec keeps by default; the rest is counted and dropped."""


class Probe(msgspec.Struct, frozen=True):
    """One health check's outcome.

    Attributes:
        healthy: Whether the provider can create and run workspaces now.
        runtime: The isolation runtime it uses (``runsc``, ``runc``, ``firecracker``, ``e2b``).
        detail: Why it is unhealthy, or notes an operator should know (e.g. a fallback).
        data_root: Where the backend keeps workspace data on this host, if anywhere.
    """

    healthy: bool
    runtime: str
    detail: str = ""
    data_root: str = ""


class ProviderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as the ``providers`` op reports it."""

    name: str
    healthy: bool
    checked_at: float
    detail: str
    runtime: str
    workspaces: int = 0
    data_root: str = ""


class BackendState(msgspec.Struct, frozen=True, kw_only=True):
    """What the backend says about one of this runtime's workspaces.

    Attributes:
        workspace_id: The workspace.
        handle: The provider's name for it.
        running: Whether it is up.
        detail: Why it is not (exit code, out of memory...), empty when running.
    """

    workspace_id: str
    handle: str
    running: bool
    detail: str = ""


class EventWatch(Protocol):
    """A blocking stream of backend events; ``close`` (from any thread) ends it."""

    def __iter__(self) -> Iterator[ContainerEvent]: ...

    def close(self) -> None:
        """Stop the stream; iteration ends."""
        ...


class ProcessSink(Protocol):
    """Where a spawned process's output and end go (called in the channel's reader thread)."""

    def output(self, stream: str, data: bytes) -> None:
        """A chunk of ``stdout`` or ``stderr``, in the order the agent read them."""
        ...

    def exited(self, exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None) -> None:
        """The process ended (``exit_code`` None and ``error`` set when it was lost)."""
        ...


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
        output_limit: int = OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run ``argv`` in the workspace and wait for it (or its timeout)."""
        ...

    def cancel_execs(self, handle: str) -> None:
        """End every exec still attached to the workspace (it is being destroyed or died)."""
        ...

    def read_file(self, handle: str, path: str) -> bytes:
        """A file's contents; ``path`` is absolute under ``/workspace`` (``files.workspace_path``).

        The provider resolves it inside the workspace and refuses it (``files.refusal``)
        if it leads outside ``/workspace``, is missing, is a directory or is too big.
        """
        ...

    def write_file(self, handle: str, path: str, data: bytes, mode: int | None) -> None:
        """Write a file (parents created, then ``chmod`` to ``mode``), by the rules of ``read_file``."""
        ...

    def spawn(
        self,
        handle: str,
        key: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        stdin_open: bool,
        timeout_s: float | None,
        sink: ProcessSink,
    ) -> int:
        """Start ``argv`` in the background as process ``key``; return its pid in the workspace.

        Its output and its end go to ``sink``, in order, from another thread.
        """
        ...

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        """Feed bytes to a spawned process's standard input; ``close`` ends it."""
        ...

    def kill(self, handle: str, key: str, signal: int) -> None:
        """Send ``signal`` to a spawned process's whole process group."""
        ...

    def close(self) -> None:
        """Release connections to the workspaces (their agents); the workspaces keep running."""
        ...

    def destroy(self, handle: str) -> None:
        """Remove the workspace and its storage; a missing workspace is not an error."""
        ...

    def inventory(self) -> dict[str, BackendState]:
        """This runtime's workspaces as the backend sees them, by workspace id."""
        ...

    def watch(self) -> EventWatch:
        """Subscribe to backend events about this runtime's workspaces."""
        ...

    def disk_usage(self, handles: list[str]) -> dict[str, int]:
        """Bytes of disk each workspace occupies (missing entries: not measurable)."""
        ...

    def resource_usage(self, handles: list[str]) -> dict[str, ResourceUsage]:
        """CPU time and memory of each workspace, read cheaply (missing entries: not measurable)."""
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

    def data_root(self) -> str:
        """Where a provider keeps its data on this host (Docker's data root), if one says."""
        return next((status.data_root for status in self.all() if status.data_root), "")

    def all(self) -> list[ProviderStatus]:
        """Every provider's latest status, by name."""
        with self._lock:
            return sorted(self._statuses.values(), key=lambda status: status.name)
