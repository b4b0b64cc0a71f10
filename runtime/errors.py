"""The exception hierarchy: one root, one family per wire error code.

Adapters (Docker, ZeroMQ, LMDB, E2B) translate their own exceptions into these at
their boundary, so the rest of the runtime only ever sees a ``WorkspaceError``.
Each family maps to exactly one error code of wire protocol v1.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "FAMILIES",
    "BadRequest",
    "CapacityExceeded",
    "ConfigError",
    "Conflict",
    "Disabled",
    "InternalError",
    "NotFound",
    "ProviderUnavailable",
    "Timeout",
    "Unauthorized",
    "WorkspaceError",
    "error_for_code",
]


class WorkspaceError(Exception):
    """Root of every error the runtime raises on purpose.

    Attributes:
        code: The wire protocol error code of this family.
        retryable: Whether the same request may succeed if sent again later.
    """

    code: ClassVar[str] = "internal"
    default_retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable


class BadRequest(WorkspaceError):
    """The request is malformed or asks for something invalid."""

    code = "bad_request"


class ConfigError(BadRequest):
    """A configuration value is invalid; start-up stops with this one line."""


class Disabled(WorkspaceError):
    """``ENABLE_AGENT_WORKSPACES`` is off."""

    code = "disabled"


class Unauthorized(WorkspaceError):
    """The request's token is missing or wrong."""

    code = "unauthorized"


class NotFound(WorkspaceError):
    """What the request names does not exist: a workspace, file, process, GitHub App, MCP server, repository or ref."""

    code = "not_found"


class Conflict(WorkspaceError):
    """The state of what the request names does not allow it (a workspace not ready, a process that ended...)."""

    code = "conflict"


class CapacityExceeded(WorkspaceError):
    """A limit is reached: ``WORKSPACE_MAX_CONCURRENT`` active workspaces, or 16 streamed processes in one."""

    code = "capacity"
    default_retryable = True


class ProviderUnavailable(WorkspaceError):
    """The provider (e.g. the Docker daemon), or what the runtime needs for the request, cannot serve it right now."""

    code = "provider_unavailable"
    default_retryable = True


class Timeout(WorkspaceError):
    """The operation did not finish within its deadline."""

    code = "timeout"
    default_retryable = True


class InternalError(WorkspaceError):
    """A bug or an unexpected failure inside the runtime."""

    code = "internal"


FAMILIES: dict[str, type[WorkspaceError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Disabled,
        Unauthorized,
        NotFound,
        Conflict,
        CapacityExceeded,
        ProviderUnavailable,
        Timeout,
        InternalError,
    )
}
"""Each wire error code and the exception family of its clients."""


def error_for_code(code: str, message: str, retryable: bool) -> WorkspaceError:
    """Rebuild the exception a server reported, for clients.

    Args:
        code: The wire error code.
        message: The server's message.
        retryable: The server's retry hint.

    Returns:
        An instance of the family for ``code`` (``WorkspaceError`` for unknown codes).
    """
    cls = FAMILIES.get(code, WorkspaceError)
    return cls(message, retryable=retryable)
