"""Turning a ``create`` request into a complete workspace entry, with clear refusals.

The values were held to the vocabulary's rules as the request was decoded; what is
left here is what depends on the configuration (the defaults) or on several fields at
once (sizes against the minimum, persistence against a TTL).
"""

from __future__ import annotations

import secrets

from runtime.config import MIN_MEMORY_BYTES, Settings, parse_size
from runtime.errors import BadRequest
from runtime.messages import CreateArgs, StoredWorkspace, WorkspaceRecord, WorkspaceSpec

__all__ = ["MIN_MEMORY_BYTES", "new_workspace_id", "resolve_create"]


def new_workspace_id() -> str:
    """A fresh workspace id: ``ws_`` and 12 hex digits."""
    return "ws_" + secrets.token_hex(6)


def _size(name: str, value: int | str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return parse_size(value)
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not a size: expected e.g. 4G, 512M or a number of bytes") from None


def resolve_create(
    settings: Settings,
    args: CreateArgs,
    *,
    workspace_id: str,
    provider: str,
    runtime: str,
    now: float,
    fallback_from: str | None = None,
    request: str = "",
) -> StoredWorkspace:
    """Fill in defaults and validate a ``create`` request.

    ``fallback_from`` names the unhealthy default provider this one stands in for;
    ``request`` is the key of the request (``ReplyTo.key``), kept so a retry finds it.

    Returns:
        The entry in state ``creating``.

    Raises:
        BadRequest: A size is malformed or too small, or persistence meets a TTL.
    """
    image = args.image or settings.default_image_for(provider)
    cpu = settings.default_cpu if args.cpu is None else float(args.cpu)
    memory = _size("memory", args.memory, settings.default_memory)
    if memory < MIN_MEMORY_BYTES:
        raise BadRequest(f"memory={args.memory!r} is below the minimum of 6M")
    disk = _size("disk", args.disk, settings.default_disk)
    if args.persistent and args.ttl_seconds is not None:
        raise BadRequest("persistent workspaces never expire: drop ttl_seconds or persistent")
    ttl = args.ttl_seconds if args.ttl_seconds is not None else settings.default_ttl_days * 86400.0
    record = WorkspaceRecord(
        id=workspace_id,
        state="creating",
        provider=provider,
        runtime=runtime,
        image=image,
        cpu=cpu,
        memory_bytes=memory,
        disk_bytes=disk,
        labels=dict(args.labels),
        persistent=args.persistent,
        created_at=now,
        expires_at=None if args.persistent else now + ttl,
        fallback_from=fallback_from,
    )
    spec = WorkspaceSpec(
        workspace_id=workspace_id,
        image=image,
        cpu=cpu,
        memory_bytes=memory,
        disk_bytes=disk,
        env=dict(args.env),
        labels=dict(args.labels),
    )
    return StoredWorkspace(record=record, spec=spec, request=request)
