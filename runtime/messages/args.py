"""Each op's arguments, and the table of ops (``OPS``) the server decodes them by.

Unknown fields are refused rather than ignored, and values are held to the rules of
``runtime.messages.rules`` as they are decoded. Fields left at their default are not
encoded, so a client's request carries only what it sets.
"""

from __future__ import annotations

from typing import Final

import msgspec

from runtime.messages.backend import RunOptions
from runtime.messages.records import State
from runtime.messages.rules import (
    AppName,
    AuditLimit,
    Cmd,
    Cpu,
    Depth,
    Disk,
    EncryptionKey,
    Env,
    FileMode,
    GithubId,
    GitRef,
    ImageName,
    Labels,
    McpMessage,
    McpName,
    Memory,
    Path,
    PrivateKey,
    ProcessId,
    ProviderName,
    RepoRef,
    Seq,
    Signal,
    Ttl,
    WorkspaceId,
)

__all__ = [
    "OPS",
    "ArgsStruct",
    "AuditArgs",
    "CreateArgs",
    "ExecArgs",
    "ExecKillArgs",
    "ExecOutputArgs",
    "ExecStdinArgs",
    "ExtendArgs",
    "GitCloneArgs",
    "GithubAppArgs",
    "GithubAppSetArgs",
    "GithubKeyArgs",
    "ListArgs",
    "McpCallArgs",
    "NoArgs",
    "ReadFileArgs",
    "WorkspaceArgs",
    "WriteFileArgs",
]


class ArgsStruct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every op's arguments: unknown fields are refused, not ignored."""


class NoArgs(ArgsStruct, frozen=True):
    """Arguments of ops that take none."""


class CreateArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``create``; ``None`` means the configured default.

    ``memory`` and ``disk`` are sizes such as ``"4G"`` or a number of bytes.
    """

    provider: ProviderName | None = None
    image: ImageName | None = None
    cpu: Cpu | None = None
    memory: Memory | None = None
    disk: Disk | None = None
    env: Env = {}
    labels: Labels = {}
    ttl_seconds: Ttl | None = None
    persistent: bool = False


class WorkspaceArgs(ArgsStruct, frozen=True):
    """Arguments of ops addressing one workspace: ``get``, ``destroy``, ``exec_list``."""

    workspace_id: WorkspaceId


class ListArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``list``: every label must match; ``state`` filters by state."""

    labels: Labels = {}
    state: State | None = None


class ExecArgs(ArgsStruct, RunOptions, kw_only=True, frozen=True):
    """Arguments of ``exec``: the command, with the options of ``RunOptions``.

    ``cmd`` is argv, or a string run by ``sh -c``; ``stream`` starts it in the background
    (its output comes as events).
    """

    workspace_id: WorkspaceId
    cmd: Cmd
    stream: bool = False

    @property
    def argv(self) -> list[str]:
        """The command as argv: ``cmd`` as given, or a string run by ``sh -c``."""
        return ["sh", "-c", self.cmd] if isinstance(self.cmd, str) else list(self.cmd)


class ExecStdinArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_stdin``: bytes for a streamed process's stdin; ``close`` ends it."""

    workspace_id: WorkspaceId
    process_id: ProcessId
    data: bytes = b""
    close: bool = False


class ExecKillArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_kill``: a signal (name or number) for the process's whole group."""

    workspace_id: WorkspaceId
    process_id: ProcessId
    signal: Signal = "TERM"


class ExecOutputArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_output``: the output events kept for a process, after ``after``."""

    workspace_id: WorkspaceId
    process_id: ProcessId
    after: Seq = 0


class WriteFileArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``write_file``."""

    workspace_id: WorkspaceId
    path: Path
    data: bytes
    mode: FileMode | None = None


class ReadFileArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``read_file``."""

    workspace_id: WorkspaceId
    path: Path


class ExtendArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``extend``."""

    workspace_id: WorkspaceId
    ttl_seconds: Ttl


class GithubAppSetArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``github_app_set``: register (or replace) a GitHub App's credentials.

    The private key is stored only encrypted (AES-256-GCM under
    ``GITHUB_APP_ENCRYPTION_KEY``) and is never part of any reply, event or log line.
    """

    name: AppName
    app_id: GithubId
    installation_id: GithubId
    private_key: PrivateKey

    def __repr__(self) -> str:  # never show the key, even in a traceback
        return f"GithubAppSetArgs(name={self.name!r}, app_id={self.app_id}, installation_id={self.installation_id})"


class GithubAppArgs(ArgsStruct, frozen=True):
    """Arguments of ``github_app_delete``."""

    name: AppName


class GithubKeyArgs(ArgsStruct, frozen=True):
    """Arguments of ``github_key_rotate``: the new ``GITHUB_APP_ENCRYPTION_KEY`` (hex or base64)."""

    key: EncryptionKey

    def __repr__(self) -> str:
        return "GithubKeyArgs(key=<hidden>)"


class GitCloneArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``git_clone``.

    ``repo`` is ``owner/name`` (on the GitHub of ``GITHUB_API_URL``) or an http(s) URL;
    ``app`` names the GitHub App whose installation token the clone uses (none: a public
    repository); ``ref`` a branch, tag or commit; ``path`` where under ``/workspace``
    (default: the repository's name); ``depth`` a shallow clone.
    """

    workspace_id: WorkspaceId
    repo: RepoRef
    app: AppName | None = None
    ref: GitRef | None = None
    path: Path | None = None
    depth: Depth | None = None


class AuditArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``github_audit``: the uses of credentials recorded after ``after`` (a ``seq``)."""

    after: Seq = 0
    limit: AuditLimit = 100


class McpCallArgs(ArgsStruct, frozen=True):
    """Arguments of ``mcp_call``: one JSON-RPC message for the MCP server ``name``.

    A request (``method`` and ``id``) is answered with the server's response; a
    notification (``method``, no ``id``) is forwarded and answered with ``{}``.
    """

    name: McpName
    message: McpMessage


OPS: Final[dict[str, type[ArgsStruct]]] = {
    "ping": NoArgs,
    "providers": NoArgs,
    "create": CreateArgs,
    "get": WorkspaceArgs,
    "list": ListArgs,
    "exec": ExecArgs,
    "exec_stdin": ExecStdinArgs,
    "exec_kill": ExecKillArgs,
    "exec_list": WorkspaceArgs,
    "exec_output": ExecOutputArgs,
    "write_file": WriteFileArgs,
    "read_file": ReadFileArgs,
    "destroy": WorkspaceArgs,
    "extend": ExtendArgs,
    "stats": NoArgs,
    "snapshot": NoArgs,
    "github_app_set": GithubAppSetArgs,
    "github_app_list": NoArgs,
    "github_app_delete": GithubAppArgs,
    "github_key_rotate": GithubKeyArgs,
    "github_audit": AuditArgs,
    "git_clone": GitCloneArgs,
    "mcp_list": NoArgs,
    "mcp_call": McpCallArgs,
}
"""Every op of wire protocol v1 and the struct its ``args`` decode to."""
