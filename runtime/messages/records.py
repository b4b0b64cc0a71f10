"""Records: what the runtime says about its workspaces and providers, and ops' results."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "ACTIVE_STATES",
    "CloneResult",
    "ExecResult",
    "FileData",
    "GithubApp",
    "McpServerStatus",
    "McpState",
    "ProviderStatus",
    "Snapshot",
    "State",
    "StoredGithubApp",
    "StoredWorkspace",
    "WorkspaceRecord",
    "WorkspaceSpec",
]

State = Literal["creating", "ready", "stopping", "destroyed", "failed"]
ACTIVE_STATES: frozenset[str] = frozenset({"creating", "ready", "stopping"})
"""States in which a workspace holds a capacity slot."""


class WorkspaceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the runtime promised about one workspace (the wire's workspace record).

    Beyond DESIGN.md's fields: ``oom_kills`` counts processes the kernel killed at the
    memory limit while the workspace lived on; ``disk_used_bytes`` is the latest disk
    measurement (filled in when the record is read, ``None`` until measured);
    ``fallback_from`` names the default provider that was unhealthy when this workspace
    was created on a fallback provider (``WORKSPACE_FALLBACK_PROVIDERS``).
    """

    id: str
    state: State
    provider: str
    runtime: str
    image: str
    cpu: float
    memory_bytes: int
    disk_bytes: int
    labels: dict[str, str]
    persistent: bool
    created_at: float
    expires_at: float | None
    from_pool: bool = False
    error: str | None = None
    oom_kills: int = 0
    disk_used_bytes: int | None = None
    fallback_from: str | None = None


McpState = Literal["starting", "ready", "failed", "stopped"]


class McpServerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """An MCP server as ``mcp_list`` reports it.

    ``state``: ``starting`` (its workspace and process are on their way), ``ready``
    (initialized: ``mcp_call`` reaches it), ``failed`` (``error`` says why; it is retried
    with backoff), ``stopped`` (not auto-started, or the runtime is stopping).
    ``restarts`` counts the starts after the first; ``transport`` is ``stdio`` or
    ``streamable-http``; ``retry_at`` is when a failed server is tried again.
    """

    name: str
    state: McpState
    workspace_id: str | None
    restarts: int
    error: str | None
    image: str = ""
    transport: str = "stdio"
    process_id: str | None = None
    retry_at: float | None = None


class WorkspaceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a provider needs to create a workspace; resolved from defaults."""

    workspace_id: str
    image: str
    cpu: float
    memory_bytes: int
    disk_bytes: int
    env: dict[str, str]
    labels: dict[str, str]


class StoredWorkspace(msgspec.Struct, frozen=True, kw_only=True, tag="workspace.v1"):
    """The value of the LMDB ``workspaces`` database: the record and private details.

    Attributes:
        record: The public record.
        spec: How the workspace was asked for (env stays private).
        handle: The provider's own name for the workspace (e.g. the container name).
        pooled: A warm pool member nobody has claimed yet (hidden from ``list``).
        request: The key (client identity and request id) of the ``create`` that made
            it, so a retry of that request is answered with this workspace, even after
            a restart; cleared when the create is rolled back.
    """

    record: WorkspaceRecord
    spec: WorkspaceSpec
    handle: str = ""
    pooled: bool = False
    request: str = ""


class ExecResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``exec``; ``via`` says how it ran (``agent``, ``docker`` exec, or ``e2b``'s commands)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    duration_ms: float = 0.0
    via: str = ""


class FileData(msgspec.Struct, frozen=True):
    """The result of ``read_file``."""

    data: bytes


class Snapshot(msgspec.Struct, frozen=True):
    """The result of ``snapshot``: the records (as ``list`` shows them) as of event ``seq``.

    A subscriber that reconnects takes a snapshot, then applies only events with a
    higher ``seq``; a gap in ``seq`` means it missed events and should take another.
    """

    seq: int
    workspaces: list[WorkspaceRecord]


class ProviderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as the ``providers`` op reports it."""

    name: str
    healthy: bool
    checked_at: float
    detail: str
    runtime: str
    workspaces: int = 0
    data_root: str = ""


class GithubApp(msgspec.Struct, frozen=True, kw_only=True):
    """A registered GitHub App as ops report it (never with its key)."""

    name: str
    app_id: int
    installation_id: int
    created_at: float


class StoredGithubApp(msgspec.Struct, frozen=True, kw_only=True, tag="github_app.v1"):
    """A GitHub App in the state log: its private key sealed with AES-256-GCM.

    Attributes:
        app: What ops report.
        nonce: The 12 random bytes this record was sealed with.
        sealed: The private key, encrypted and authenticated, with the app's name as
            associated data (a record moved under another name does not open).
    """

    app: GithubApp
    nonce: bytes
    sealed: bytes


class CloneResult(msgspec.Struct, frozen=True):
    """The result of ``git_clone``: where the repository is and the commit checked out."""

    path: str
    commit: str
