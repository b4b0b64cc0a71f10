"""What every provider adapter offers: a workspace's lifecycle, and its commands.

Adapters are blocking and thread-safe: actors call them from worker threads, never from
their own mailbox loop. They raise only ``WorkspaceError`` families, translating their
backend's exceptions at this boundary. A provider is two halves: the lifecycle
(``Provider``: probe, create, destroy, inventory, events, measurements) and what runs
inside a workspace (``Commands``: commands, files, streamed processes), which providers
whose workspaces run the agent get from ``runtime.agent.AgentExecutor``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from runtime.messages import BackendState, Command, ContainerEvent, ExecResult, Probe, ResourceUsage, WorkspaceSpec

__all__ = ["LABEL_ID", "LABEL_INSTANCE", "LABEL_MANAGED", "Commands", "EventWatch", "ProcessSink", "Provider"]

LABEL_MANAGED: Final = "agent-workspaces.managed"
LABEL_ID: Final = "agent-workspaces.id"
LABEL_INSTANCE: Final = "agent-workspaces.instance"


class EventWatch(Protocol):
    """A blocking stream of backend events; ``close`` (from any thread) ends it."""

    def __iter__(self) -> Iterator[ContainerEvent]: ...

    def close(self) -> None:
        """Stop the stream; iteration ends."""
        ...


class ProcessSink(Protocol):
    """Where a spawned process's output and end go (called from one thread, in order)."""

    def output(self, stream: str, data: bytes) -> None:
        """A chunk of ``stdout`` or ``stderr``, in the order it was read."""
        ...

    def exited(self, exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None) -> None:
        """The process ended (``exit_code`` None and ``error`` set when it was lost)."""
        ...


class Commands(Protocol):
    """What runs inside a provider's workspaces, addressed by the workspace's handle."""

    def exec(self, handle: str, command: Command) -> ExecResult:
        """Run ``command`` and wait for it (or its timeout, which kills its process group)."""
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

    def spawn(self, handle: str, key: str, command: Command, sink: ProcessSink) -> int:
        """Start ``command`` in the background as process ``key``; return its pid in the workspace.

        Its output and its end go to ``sink``, in order, from another thread.
        """
        ...

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        """Feed bytes to a spawned process's standard input; ``close`` ends it."""
        ...

    def kill(self, handle: str, key: str, signal: int) -> None:
        """Send ``signal`` to a spawned process's whole process group."""
        ...

    def cancel(self, handle: str) -> None:
        """End everything running in the workspace on the runtime's behalf (it is going away)."""
        ...

    def close(self) -> None:
        """Release every connection into workspaces; the workspaces keep running."""
        ...


class Provider(Protocol):
    """A blocking adapter to one isolation backend."""

    name: str

    @property
    def commands(self) -> Commands:
        """What runs inside this provider's workspaces."""
        ...

    def probe(self) -> Probe:
        """Check that the backend can serve workspaces now."""
        ...

    def create(self, spec: WorkspaceSpec) -> str:
        """Create and start a workspace; return the provider's handle for it."""
        ...

    def destroy(self, handle: str) -> None:
        """Remove the workspace and its storage; a missing workspace is not an error."""
        ...

    def inventory(self) -> dict[str, BackendState]:
        """This runtime's workspaces as the backend sees them, by workspace id."""
        ...

    def renew(self, expiries: Mapping[str, float | None]) -> None:
        """Keep each workspace (by handle) until its expiry (``None``: as long as the runtime keeps it).

        Called at every health check with the ready workspaces, and after an ``extend``.
        Only backends that end workspaces on their own clock (E2B's sandbox timeout) act;
        the others do nothing. Never raises: a failure is tried again at the next call.
        """
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

    def close(self) -> None:
        """Release connections to the workspaces (e.g. their agents); the workspaces keep running."""
        ...
