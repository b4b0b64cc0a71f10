"""Streamed processes: their records, output events and the topics they are published on.

A streamed process's events carry the process's own ``seq`` (1, 2, ...), not the state
log's: its output is not state. ``Truncated`` is what a follower yields for output the
runtime no longer keeps.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "OutputChunk",
    "OutputPage",
    "ProcessExited",
    "ProcessInfo",
    "ProcessOutput",
    "StreamEvent",
    "Truncated",
    "exec_topic_prefix",
    "process_topic",
]


def exec_topic_prefix(workspace_id: str) -> str:
    """The topic prefix of every streamed process of a workspace."""
    return f"exec.{workspace_id}."


def process_topic(workspace_id: str, process_id: str) -> str:
    """The event topic of one process."""
    return exec_topic_prefix(workspace_id) + process_id


class ProcessInfo(msgspec.Struct, kw_only=True):
    """A streamed process as ``exec`` (with ``stream``) and ``exec_list`` report it."""

    process_id: str
    workspace_id: str
    topic: str
    cmd: list[str]
    pid: int = 0
    started_at: float
    running: bool = True
    stdin_open: bool = False
    exit_code: int | None = None
    timed_out: bool = False
    ended_at: float | None = None
    error: str | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0


class ProcessOutput(msgspec.Struct, frozen=True, kw_only=True, tag="exec.output", tag_field="type"):
    """An output chunk of a streamed process (``stream``: ``stdout`` or ``stderr``)."""

    seq: int
    ts: float
    workspace_id: str
    process_id: str
    stream: str
    data: bytes


class ProcessExited(msgspec.Struct, frozen=True, kw_only=True, tag="exec.exit", tag_field="type"):
    """The last event of a streamed process; ``exit_code`` is None when it was lost."""

    seq: int
    ts: float
    workspace_id: str
    process_id: str
    exit_code: int | None
    timed_out: bool
    duration_ms: float
    error: str | None = None


class OutputChunk(msgspec.Struct, frozen=True):
    """One kept output event of a process."""

    seq: int
    stream: str
    data: bytes
    ts: float = 0.0


class OutputPage(msgspec.Struct, kw_only=True):
    """The result of ``exec_output``.

    Attributes:
        process: The process now.
        chunks: Kept output events with ``seq`` > ``after``, oldest first.
        truncated: Output events after ``after`` that are no longer kept (lost to this reader).
        exit: The exit event, once the process has ended.
    """

    process: ProcessInfo
    chunks: list[OutputChunk]
    truncated: int = 0
    exit: ProcessExited | None = None


class Truncated(msgspec.Struct, frozen=True, kw_only=True):
    """``missed`` output events of the process were no longer kept by the runtime."""

    process_id: str
    missed: int


StreamEvent = ProcessOutput | Truncated | ProcessExited
"""What following a streamed process yields, in order."""
