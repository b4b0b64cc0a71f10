"""Commands: the messages actors tell each other (never on the wire, never in the log).

Requests from clients carry ``reply_to``, the client's ROUTER identity and request id,
so whichever actor finishes the work answers the client directly.
"""

from __future__ import annotations

from typing import Any

import msgspec

from runtime.messages.args import (
    CreateArgs,
    ExecArgs,
    ExecKillArgs,
    ExecStdinArgs,
    ExtendArgs,
    GitCloneArgs,
    GithubAppArgs,
    GithubAppSetArgs,
    GithubKeyArgs,
    ReadFileArgs,
    WriteFileArgs,
)
from runtime.messages.records import StoredWorkspace

__all__ = [
    "Adopt",
    "BootWorkspace",
    "Completed",
    "CreateWorkspace",
    "DestroyWorkspace",
    "Extend",
    "GitClone",
    "ManageGithub",
    "ProcessCall",
    "ReadFile",
    "Refill",
    "ReplyTo",
    "Resync",
    "RunExec",
    "Tick",
    "WriteFile",
]


class ReplyTo(msgspec.Struct, frozen=True):
    """Where an actor sends the reply: the client's ROUTER identity and request id."""

    identity: bytes
    request_id: str

    @property
    def key(self) -> str:
        """The printable key of this request (stored with a workspace a ``create`` made).

        Empty for an empty id: such requests cannot be told apart, so they are never matched.
        """
        return f"{self.identity.hex()}:{self.request_id}" if self.request_id else ""


class CreateWorkspace(msgspec.Struct, frozen=True, tag="cmd.create"):
    """-> ProviderActor: create a workspace (``cold``: do not take it from the pool).

    ``fallback_from`` is set when this provider stands in for an unhealthy default.
    """

    reply_to: ReplyTo
    args: CreateArgs
    cold: bool = False
    fallback_from: str | None = None


class Adopt(msgspec.Struct, frozen=True, tag="cmd.adopt"):
    """ProviderActor -> WorkspaceActor of a pool member: become the workspace ``args`` asks for.

    ``provider`` is the claiming ProviderActor's provider, to hand the request back to
    (as a cold create) should the member be gone; ``fallback_from`` as in ``CreateWorkspace``.
    """

    reply_to: ReplyTo
    args: CreateArgs
    provider: str
    fallback_from: str | None = None


class Refill(msgspec.Struct, frozen=True, tag="cmd.refill"):
    """-> PoolActor: a member was claimed, became ready or failed; top the pool up."""


class BootWorkspace(msgspec.Struct, frozen=True, tag="cmd.boot"):
    """-> WorkspaceActor: persist ``entry`` and create the workspace (no reply for pool members)."""

    reply_to: ReplyTo | None
    entry: StoredWorkspace


class RunExec(msgspec.Struct, frozen=True, tag="cmd.exec"):
    """-> WorkspaceActor: run a command (or start a streamed process)."""

    reply_to: ReplyTo
    args: ExecArgs


class ProcessCall(msgspec.Struct, frozen=True, tag="cmd.process"):
    """-> WorkspaceActor: feed or signal a streamed process."""

    reply_to: ReplyTo
    args: ExecStdinArgs | ExecKillArgs


class WriteFile(msgspec.Struct, frozen=True, tag="cmd.write_file"):
    """-> WorkspaceActor: write a file in the workspace."""

    reply_to: ReplyTo
    args: WriteFileArgs


class ReadFile(msgspec.Struct, frozen=True, tag="cmd.read_file"):
    """-> WorkspaceActor: read a file from the workspace."""

    reply_to: ReplyTo
    args: ReadFileArgs


class GitClone(msgspec.Struct, frozen=True, tag="cmd.git_clone"):
    """-> WorkspaceActor: clone a repository into the workspace."""

    reply_to: ReplyTo
    args: GitCloneArgs


class ManageGithub(msgspec.Struct, frozen=True, tag="cmd.github"):
    """-> CredentialsActor: register, delete or re-encrypt GitHub App credentials."""

    reply_to: ReplyTo
    args: GithubAppSetArgs | GithubAppArgs | GithubKeyArgs


class Extend(msgspec.Struct, frozen=True, tag="cmd.extend"):
    """-> WorkspaceActor: move the expiry to now + ``ttl_seconds``."""

    reply_to: ReplyTo
    args: ExtendArgs


class Tick(msgspec.Struct, frozen=True, tag="cmd.tick"):
    """Ticker -> actor: time for the periodic work (health checks, measurements)."""


class Resync(msgspec.Struct, frozen=True, tag="cmd.resync"):
    """Watcher -> ProviderActor: events may have been missed; compare with the backend now."""


class DestroyWorkspace(msgspec.Struct, frozen=True, tag="cmd.destroy"):
    """-> WorkspaceActor: destroy the workspace (idempotent); ``reason`` goes in the event."""

    reply_to: ReplyTo | None
    reason: str | None = None


class Completed(msgspec.Struct, frozen=True, tag="cmd.completed"):
    """Worker -> actor: a blocking call finished with ``value`` or ``error``.

    Attributes:
        kind: Which call finished (e.g. ``"boot"``, ``"exec"``, ``"destroy"``).
        reply_to: Who is waiting for the outcome, if anyone.
        value: The call's return value.
        error: The exception it raised, if it failed.
    """

    kind: str
    reply_to: ReplyTo | None
    value: Any = None
    error: Any = None
