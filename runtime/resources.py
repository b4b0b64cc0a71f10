"""Turning a ``create`` request into a complete workspace entry, with clear refusals."""

from __future__ import annotations

import re
import secrets

from runtime.config import Settings, parse_size
from runtime.errors import BadRequest
from runtime.messages import CreateArgs, ExecArgs, StoredWorkspace, WorkspaceRecord, WorkspaceSpec

__all__ = ["MIN_MEMORY_BYTES", "check_env", "exec_argv", "new_workspace_id", "resolve_create"]

MIN_MEMORY_BYTES = 6 << 20  # Docker refuses less
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
_IMAGE = re.compile(r"^\S{1,255}$")


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


def check_env(env: dict[str, str]) -> None:
    """Refuse environment names a shell could not export and values with NUL bytes."""
    for key, value in env.items():
        if not _ENV_KEY.match(key):
            raise BadRequest(f"env name {key!r} is not valid: expected letters, digits and _ (not first a digit)")
        if "\x00" in value:
            raise BadRequest(f"env value of {key} contains a NUL byte")


def resolve_create(
    settings: Settings, args: CreateArgs, *, workspace_id: str, provider: str, runtime: str, now: float
) -> StoredWorkspace:
    """Fill in defaults and validate a ``create`` request.

    Returns:
        The entry in state ``creating``.

    Raises:
        BadRequest: A value is out of range or malformed; the message names it.
    """
    image = args.image or settings.default_image
    if not _IMAGE.match(image):
        raise BadRequest(f"image={image!r} is not a valid image name")
    cpu = settings.default_cpu if args.cpu is None else float(args.cpu)
    if not 0.01 <= cpu <= 1024:
        raise BadRequest(f"cpu={cpu:g} is out of range: expected 0.01 to 1024 cores")
    memory = _size("memory", args.memory, settings.default_memory)
    if memory < MIN_MEMORY_BYTES:
        raise BadRequest(f"memory={args.memory!r} is below the minimum of 6M")
    disk = _size("disk", args.disk, settings.default_disk)
    check_env(args.env)
    for key, value in args.labels.items():
        if not _LABEL_KEY.match(key) or len(value) > 256:
            raise BadRequest(
                f"label {key!r} is not valid: keys are 1-63 of [A-Za-z0-9._/-], values at most 256 characters"
            )
    if args.persistent and args.ttl_seconds is not None:
        raise BadRequest("persistent workspaces never expire: drop ttl_seconds or persistent")
    if args.ttl_seconds is not None and not args.ttl_seconds > 0:
        raise BadRequest(f"ttl_seconds={args.ttl_seconds!r} must be > 0")
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
    return StoredWorkspace(record=record, spec=spec)


def exec_argv(args: ExecArgs) -> list[str]:
    """The argv of an exec request: the list as given, or a string run by ``sh -c``."""
    if args.timeout_s is not None and not args.timeout_s > 0:
        raise BadRequest(f"timeout_s={args.timeout_s!r} must be > 0")
    if isinstance(args.cmd, str):
        if not args.cmd.strip():
            raise BadRequest("cmd is empty")
        return ["sh", "-c", args.cmd]
    if not args.cmd or not args.cmd[0]:
        raise BadRequest("cmd is empty")
    return list(args.cmd)
