"""Registry names of the runtime's actors (the Supervisor's name table)."""

from __future__ import annotations

__all__ = ["POOL", "REAPER", "SAMPLER", "provider_name", "workspace_name"]

POOL = "pool"
REAPER = "reaper"
SAMPLER = "sampler"


def provider_name(provider: str) -> str:
    """The registry name of a provider's actor."""
    return f"provider:{provider}"


def workspace_name(workspace_id: str) -> str:
    """The registry name of a workspace's actor."""
    return f"workspace:{workspace_id}"
