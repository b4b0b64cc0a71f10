"""Events: what the runtime publishes; the state log gives each its ``seq`` and ``ts``.

Every event is published on its class's ``topic`` and carries its ``type`` tag, so a
subscriber in any language tells them apart by one field.
"""

from __future__ import annotations

from typing import Any, ClassVar, get_args

import msgspec

from runtime.messages.records import McpState, State, WorkspaceRecord

__all__ = [
    "LOG_TOPICS",
    "ActorCrashed",
    "AlertCleared",
    "AlertEvent",
    "AlertRaised",
    "AnyEvent",
    "Event",
    "GithubAppChanged",
    "GithubCredentialUsed",
    "McpNotification",
    "McpServerChanged",
    "ProviderHealthChanged",
    "WorkspaceStateChanged",
]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of published events; the state log assigns ``seq`` and ``ts``."""

    topic: ClassVar[str]
    seq: int = 0
    ts: float = 0.0


class WorkspaceStateChanged(Event, tag="workspace.state", frozen=True):
    """A workspace's record changed; ``record`` is the record after the change."""

    topic: ClassVar[str] = "workspace"
    workspace_id: str
    state: State
    record: WorkspaceRecord
    reason: str | None = None
    pooled: bool = False


class AlertEvent(Event, frozen=True):
    """What alert events carry; ``key`` names the condition (one alert per key)."""

    topic: ClassVar[str] = "alert"
    key: str
    resource: str
    message: str
    value: float
    limit: float
    workspace_id: str | None = None
    threshold: float | None = None


class AlertRaised(AlertEvent, frozen=True, tag="alert.raised"):
    """A resource crossed its threshold."""


class AlertCleared(AlertEvent, frozen=True, tag="alert.cleared"):
    """The condition of an earlier ``AlertRaised`` with the same ``key`` is over."""


class ActorCrashed(Event, frozen=True, tag="actor.crashed"):
    """An actor raised; ``restarted`` says whether its supervisor started a new one.

    ``workspace_id`` is set when the actor owned a workspace (only that one is affected).
    """

    topic: ClassVar[str] = "actor"
    actor: str
    reason: str
    restarted: bool
    workspace_id: str | None = None


class ProviderHealthChanged(Event, frozen=True, tag="provider.health"):
    """A provider turned healthy or unhealthy (or its detail changed)."""

    topic: ClassVar[str] = "provider"
    provider: str
    healthy: bool
    detail: str
    runtime: str


class GithubAppChanged(Event, frozen=True, tag="github.app"):
    """A GitHub App was registered, replaced or deleted, or every key was re-encrypted.

    ``action`` is ``set``, ``deleted`` or ``rotated`` (``app`` empty: all of them).
    """

    topic: ClassVar[str] = "github"
    action: str
    app: str = ""


class GithubCredentialUsed(Event, frozen=True, tag="github.used"):
    """An audit record: a credential was used (or refused) for a workspace and a repository.

    ``app`` is empty for a public repository cloned without one; ``outcome`` is ``ok`` or
    the wire error code; ``error`` says why (with every secret taken out).
    """

    topic: ClassVar[str] = "github"
    app: str
    workspace_id: str
    repo: str
    outcome: str
    error: str | None = None


class McpServerChanged(Event, frozen=True, tag="mcp.state"):
    """An MCP server's status changed (the fields of ``mcp_list``'s entries)."""

    topic: ClassVar[str] = "mcp"
    name: str
    state: McpState
    workspace_id: str | None
    restarts: int
    error: str | None = None


class McpNotification(Event, frozen=True, tag="mcp.notification"):
    """A JSON-RPC notification an MCP server sent (e.g. ``notifications/tools/list_changed``)."""

    topic: ClassVar[str] = "mcp"
    name: str
    message: dict[str, Any]


AnyEvent = (
    WorkspaceStateChanged
    | AlertRaised
    | AlertCleared
    | ActorCrashed
    | ProviderHealthChanged
    | GithubAppChanged
    | GithubCredentialUsed
    | McpServerChanged
    | McpNotification
)
"""Every event the state log records."""

LOG_TOPICS: tuple[str, ...] = tuple(sorted({kind.topic for kind in get_args(AnyEvent)}))
"""Topics of the events the state log sequences: one ``seq`` runs across all of them."""
