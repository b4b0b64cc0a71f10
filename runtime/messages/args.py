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
from runtime.messages.rules import Cmd, Cpu, EnvName, EnvValue, FileMode, ImageName, LabelKey, LabelValue, Seconds

__all__ = [
    "OPS",
    "ArgsStruct",
    "CreateArgs",
    "ExecArgs",
    "ExecKillArgs",
    "ExecOutputArgs",
    "ExecStdinArgs",
    "ExtendArgs",
    "ListArgs",
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

    provider: str | None = None
    image: ImageName | None = None
    cpu: Cpu | None = None
    memory: int | str | None = None
    disk: int | str | None = None
    env: dict[EnvName, EnvValue] = {}
    labels: dict[LabelKey, LabelValue] = {}
    ttl_seconds: Seconds | None = None
    persistent: bool = False


class WorkspaceArgs(ArgsStruct, frozen=True):
    """Arguments of ops addressing one workspace: ``get``, ``destroy``, ``exec_list``."""

    workspace_id: str


class ListArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``list``: every label must match; ``state`` filters by state."""

    labels: dict[str, str] = {}
    state: State | None = None


class ExecArgs(ArgsStruct, RunOptions, kw_only=True, frozen=True):
    """Arguments of ``exec``: the command, with the options of ``RunOptions``.

    ``cmd`` is argv, or a string run by ``sh -c``; ``stream`` starts it in the background
    (its output comes as events).
    """

    workspace_id: str
    cmd: Cmd
    stream: bool = False

    @property
    def argv(self) -> list[str]:
        """The command as argv: ``cmd`` as given, or a string run by ``sh -c``."""
        return ["sh", "-c", self.cmd] if isinstance(self.cmd, str) else list(self.cmd)


class ExecStdinArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_stdin``: bytes for a streamed process's stdin; ``close`` ends it."""

    workspace_id: str
    process_id: str
    data: bytes = b""
    close: bool = False


class ExecKillArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_kill``: a signal (name or number) for the process's whole group."""

    workspace_id: str
    process_id: str
    signal: str | int = "TERM"


class ExecOutputArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_output``: the output events kept for a process, after ``after``."""

    workspace_id: str
    process_id: str
    after: int = 0


class WriteFileArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``write_file``."""

    workspace_id: str
    path: str
    data: bytes
    mode: FileMode | None = None


class ReadFileArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``read_file``."""

    workspace_id: str
    path: str


class ExtendArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``extend``."""

    workspace_id: str
    ttl_seconds: Seconds


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
}
"""Every op of wire protocol v1 and the struct its ``args`` decode to."""
