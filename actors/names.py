"""Registry names of the runtime's actors (the supervisors' name table)."""

from __future__ import annotations

__all__ = [
    "CREDENTIALS",
    "POOL",
    "REAPER",
    "SAMPLER",
    "WORKSPACES",
    "WORKSPACE_PREFIX",
    "provider_name",
    "workspace_name",
]

CREDENTIALS = "credentials"
POOL = "pool"
REAPER = "reaper"
SAMPLER = "sampler"
WORKSPACES = "workspaces"
"""The dynamic supervisor of the workspace actors."""
WORKSPACE_PREFIX = "workspace:"


def provider_name(provider: str) -> str:
    """The registry name of a provider's actor."""
    return f"provider:{provider}"


def workspace_name(workspace_id: str) -> str:
    """The registry name of a workspace's actor."""
    return f"{WORKSPACE_PREFIX}{workspace_id}"
