"""Streamed processes: what each one is, the output kept for it, and its events.

``exec`` with ``stream: true`` registers a process here and gets a sink the provider
feeds from its agent's reader thread. Each chunk and the exit become an event on the
topic ``exec.<workspace_id>.<process_id>`` with the process's own ``seq`` (1, 2, ...;
gap-detectable per process). These events do not enter the state log - a 50 MB stream
is not state - so they have their own numbering rather than the log's.

Nothing is lost on the way out: the provider's channel blocks the command when the
runtime reads slowly, and the publisher's queue (``runtime.wire.Publisher``) is bounded
(a full queue blocks the reader, not memory). A subscriber can still miss events (it
subscribed late, or ZeroMQ dropped them at its high-water mark); ``exec_output`` replays the newest ``limit`` bytes
(1 MiB once it has ended) kept for the process and says how many output events are no
longer kept (``truncated``).
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable

import msgspec

from runtime.errors import CapacityExceeded, NotFound
from runtime.messages import (
    OUTPUT_LIMIT,
    OutputChunk,
    OutputPage,
    ProcessExited,
    ProcessInfo,
    ProcessOutput,
    encode,
    process_topic,
)

__all__ = ["MAX_RUNNING", "ProcessTable", "Publish"]

MAX_RUNNING = 16
"""Streamed processes one workspace may have running at once."""
_KEEP_ENDED = 16  # ended processes listed (and replayable) per workspace
_KEEP_AFTER_END = 1 << 20  # output kept for replay once a process has ended

Publish = Callable[[str, bytes], None]
"""Sends ``(topic, encoded event)`` out, in call order (``runtime.wire.Publisher.publish``)."""


class _Process:
    """One process's record and kept output (guarded by the table's lock)."""

    def __init__(self, info: ProcessInfo) -> None:
        self.info = info
        self.seq = 0
        self.chunks: collections.deque[OutputChunk] = collections.deque()
        self.kept = 0
        self.dropped_through = 0  # output events up to this seq are no longer kept
        self.exit: ProcessExited | None = None

    def keep_at_most(self, limit: int) -> None:
        """Drop the oldest kept chunks (the newest always stays) until ``limit`` bytes remain."""
        while self.kept > limit and len(self.chunks) > 1:
            old = self.chunks.popleft()
            self.kept -= len(old.data)
            self.dropped_through = old.seq


class _Sink:
    """The provider's end: output and exit of one process (called from one thread)."""

    def __init__(self, table: ProcessTable, workspace_id: str, process_id: str) -> None:
        self._table = table
        self._key = (workspace_id, process_id)

    def output(self, stream: str, data: bytes) -> None:
        self._table._output(self._key, stream, data)

    def exited(self, exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None) -> None:
        self._table._exited(self._key, exit_code, timed_out, duration_ms, error)


class ProcessTable:
    """Every workspace's streamed processes; thread-safe.

    Args:
        publish: Sends ``(topic, encoded event)`` out, in call order.
        limit: Bytes of output kept per process for ``exec_output``.
    """

    def __init__(self, publish: Publish, limit: int = OUTPUT_LIMIT) -> None:
        self._publish = publish
        self._limit = limit
        self._lock = threading.Lock()
        self._processes: dict[tuple[str, str], _Process] = {}

    def register(self, workspace_id: str, cmd: list[str], *, stdin_open: bool) -> tuple[ProcessInfo, _Sink]:
        """A new process (not started yet) and the sink its provider feeds.

        Raises:
            CapacityExceeded: The workspace already runs ``MAX_RUNNING`` streamed processes.
        """
        process_id = f"proc_{secrets.token_hex(6)}"
        info = ProcessInfo(
            process_id=process_id,
            workspace_id=workspace_id,
            topic=process_topic(workspace_id, process_id),
            cmd=cmd,
            started_at=time.time(),
            stdin_open=stdin_open,
        )
        with self._lock:
            running = sum(1 for (ws, _), p in self._processes.items() if ws == workspace_id and p.info.running)
            if running >= MAX_RUNNING:
                raise CapacityExceeded(f"workspace {workspace_id} already runs {running} streamed processes")
            self._processes[(workspace_id, process_id)] = _Process(info)
        return info, _Sink(self, workspace_id, process_id)

    def started(self, info: ProcessInfo, pid: int) -> ProcessInfo:
        """The provider started ``info``'s process as ``pid``; return its record now."""
        with self._lock:
            process = self._processes.get((info.workspace_id, info.process_id))
            if process is None:  # it ended, and was trimmed away, before its start was noted
                return msgspec.structs.replace(info, pid=pid, running=False)
            process.info.pid = pid
            return msgspec.structs.replace(process.info)

    def discard(self, workspace_id: str, process_id: str) -> None:
        """Forget a process that never started."""
        with self._lock:
            self._processes.pop((workspace_id, process_id), None)

    def get(self, workspace_id: str, process_id: str) -> ProcessInfo:
        """A process's record; ``NotFound`` if unknown."""
        with self._lock:
            return msgspec.structs.replace(self._get(workspace_id, process_id).info)

    def list(self, workspace_id: str) -> list[ProcessInfo]:
        """The workspace's processes, running and recently ended, oldest first."""
        with self._lock:
            infos = [msgspec.structs.replace(p.info) for (ws, _), p in self._processes.items() if ws == workspace_id]
        return sorted(infos, key=lambda info: info.started_at)

    def output(self, workspace_id: str, process_id: str, after: int = 0) -> OutputPage:
        """The kept output events with ``seq > after`` (and the exit, if it has come)."""
        with self._lock:
            process = self._get(workspace_id, process_id)
            chunks = [chunk for chunk in process.chunks if chunk.seq > after]
            truncated = max(0, process.dropped_through - after)
            return OutputPage(
                process=msgspec.structs.replace(process.info), chunks=chunks, truncated=truncated, exit=process.exit
            )

    def forget(self, workspace_id: str) -> None:
        """Drop the workspace's processes (it has ended)."""
        with self._lock:
            for key in [key for key in self._processes if key[0] == workspace_id]:
                del self._processes[key]

    # ------------------------------------------------------------------ from the sinks

    def _get(self, workspace_id: str, process_id: str) -> _Process:
        process = self._processes.get((workspace_id, process_id))
        if process is None:
            raise NotFound(f"process {process_id} does not exist in workspace {workspace_id}")
        return process

    def _output(self, key: tuple[str, str], stream: str, data: bytes) -> None:
        with self._lock:
            process = self._processes.get(key)
            if process is None or process.exit is not None:
                return
            process.seq += 1
            chunk = OutputChunk(process.seq, stream, data, time.time())
            process.chunks.append(chunk)
            process.kept += len(data)
            if stream == "stderr":
                process.info.stderr_bytes += len(data)
            else:
                process.info.stdout_bytes += len(data)
            process.keep_at_most(self._limit)
            event = ProcessOutput(
                seq=chunk.seq, ts=chunk.ts, workspace_id=key[0], process_id=key[1], stream=stream, data=data
            )
        self._publish(process.info.topic, encode(event))  # outside the lock: it may block

    def _exited(
        self, key: tuple[str, str], exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None
    ) -> None:
        with self._lock:
            process = self._processes.get(key)
            if process is None or process.exit is not None:
                return
            process.seq += 1
            now = time.time()
            event = ProcessExited(
                seq=process.seq, ts=now, workspace_id=key[0], process_id=key[1], exit_code=exit_code,
                timed_out=timed_out, duration_ms=duration_ms, error=error,
            )  # fmt: skip
            process.exit = event
            process.keep_at_most(_KEEP_AFTER_END)
            info = process.info
            info.running, info.exit_code, info.timed_out, info.ended_at, info.error = (
                False, exit_code, timed_out, now, error,
            )  # fmt: skip
            self._trim_ended(key[0])
        self._publish(info.topic, encode(event))

    def _trim_ended(self, workspace_id: str) -> None:
        ended = [p for (ws, _), p in self._processes.items() if ws == workspace_id and not p.info.running]
        ended.sort(key=lambda p: p.info.ended_at or 0.0)
        for process in ended[: max(0, len(ended) - _KEEP_ENDED)]:
            del self._processes[(workspace_id, process.info.process_id)]
