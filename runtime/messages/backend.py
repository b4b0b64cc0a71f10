"""What providers are asked to run and what they report about their backend.

These travel between provider adapters (blocking, on worker threads) and the actors:
a ``Command`` to run in a workspace, a health ``Probe``, the ``BackendState`` of each
workspace in an inventory, a workspace's ``ResourceUsage``, and ``ContainerEvent`` for
what the backend's event stream says happened to a workspace.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from runtime.messages.rules import Env, Path, Timeout

__all__ = ["OUTPUT_LIMIT", "BackendState", "Command", "ContainerEvent", "Probe", "ResourceUsage", "RunOptions"]

OUTPUT_LIMIT: Final = 8 << 20
"""Bytes of stdout (and of stderr) a command keeps by default; the rest is counted and dropped."""


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a command runs: the same fields in an ``exec`` request and in the ``Command`` it becomes.

    Attributes:
        cwd: Working directory (``None``: the workspace's default, ``/workspace``).
        env: Extra environment variables.
        stdin: Bytes for its standard input (``None``: ``/dev/null``, unless ``stdin_open``).
        timeout_s: Its whole process group is killed after this long.
        stdin_open: For a streamed process: keep stdin open for later writes.
    """

    cwd: Path | None = None
    env: Env = {}
    stdin: bytes | None = None
    timeout_s: Timeout | None = None
    stdin_open: bool = False


class Command(RunOptions, frozen=True, kw_only=True):
    """A command to run in a workspace, as every provider and the agent take it.

    Attributes:
        argv: The program and its arguments.
        output_limit: Bytes of stdout and of stderr kept when it runs to its end.
    """

    argv: list[str]
    output_limit: int = OUTPUT_LIMIT


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


class ResourceUsage(msgspec.Struct, frozen=True):
    """A workspace's CPU time used so far and its memory in use now.

    ``memory_bytes`` leaves out inactive page cache (as ``docker stats`` does): the
    kernel reclaims it before it would kill anything at the limit.
    """

    cpu_seconds: float
    memory_bytes: int


class ContainerEvent(msgspec.Struct, frozen=True, tag="cmd.container_event"):
    """The backend reported something about a workspace (ProviderActor -> WorkspaceActor).

    Attributes:
        workspace_id: The workspace.
        kind: ``oom`` (a process was killed at the memory limit, the workspace lives on),
            ``died`` (the workspace's container stopped) or ``vanished`` (it was removed
            behind the runtime's back).
        detail: What happened, for the record's ``error`` and the logs.
    """

    workspace_id: str
    kind: Literal["oom", "died", "vanished"]
    detail: str
