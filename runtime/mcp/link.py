"""The writing side of one running MCP server: its stdin, its deadlines.

A ``Link`` is one thread with its own client of the runtime. It writes what the callers
and the runtime send to the server's stdin, in order (lines queued meanwhile go out in
one ``exec_stdin``), and every half second it times out calls the server has not answered
within ``CALL_TIMEOUT_S`` and kills a server that has not answered ``initialize`` within
``HANDSHAKE_TIMEOUT_S``. It never blocks the thread that reads the server's output.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from runtime.errors import Timeout, WorkspaceError
from runtime.mcp.jsonrpc import Mux
from runtime.wire.client import Client
from runtime.wire.outbox import Outbox

__all__ = ["CALL_TIMEOUT_S", "HANDSHAKE_TIMEOUT_S", "Link"]

log = logging.getLogger(__name__)

CALL_TIMEOUT_S: Final = 300.0
"""How long a call may wait for the server's response before it is answered ``timeout``."""
HANDSHAKE_TIMEOUT_S: Final = 30.0
"""How long a new server process has to answer ``initialize``."""
_TICK_S = 0.5
_END: Final = b""


class Link(threading.Thread):
    """Writes to one server process's stdin and keeps its deadlines (see the module docstring).

    Args:
        name: The server's name (for logs and errors).
        workspace_id: Its workspace.
        process_id: Its streamed process.
        mux: The process's id rewriting (for the deadlines).
        client: Makes this thread's client of the runtime.
        outbox: Makes this thread's outbox (to answer timed-out calls).
    """

    def __init__(
        self,
        name: str,
        *,
        workspace_id: str,
        process_id: str,
        mux: Mux,
        client: Callable[[], Client],
        outbox: Callable[[], Outbox],
    ) -> None:
        super().__init__(name=f"mcp-link-{name}", daemon=True)
        self._server = name
        self._workspace_id = workspace_id
        self._process_id = process_id
        self._mux = mux
        self._make_client = client
        self._make_outbox = outbox
        self._lines: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        self._kill = False
        self.killed_because: str | None = None

    def send(self, line: bytes) -> None:
        """Queue ``line`` (one JSON-RPC message and its newline) for the server's stdin."""
        self._lines.put(line)

    def finish(self, *, kill: bool) -> None:
        """End the link: close the server's stdin (a stdio server then exits); ``kill`` it too."""
        self._kill = kill
        self._lines.put(_END)

    def run(self) -> None:
        """Write and keep deadlines until ``finish``; then close the stdin (and kill)."""
        client = self._make_client()
        outbox = self._make_outbox()
        try:
            while self._step(client, outbox):
                pass
            self._end(client)
        finally:
            client.close()
            outbox.close()

    def _step(self, client: Client, outbox: Outbox) -> bool:
        """Write what is queued and keep the deadlines; ``False`` once ``finish`` was called."""
        try:
            batch = [self._lines.get(timeout=_TICK_S)]
        except queue.Empty:
            batch = []
        while True:
            try:
                batch.append(self._lines.get_nowait())
            except queue.Empty:
                break
        ended = _END in batch
        data = b"".join(line for line in batch if line != _END)
        if data:
            try:
                client.exec_stdin(self._workspace_id, self._process_id, data)
            except WorkspaceError as exc:  # the process ended: its reader reports that
                log.debug("MCP server %s: stdin not written: %s", self._server, exc.message)
        for reply_to in self._mux.expired(CALL_TIMEOUT_S):
            outbox.fail(reply_to, Timeout(f"MCP server {self._server} did not answer within {CALL_TIMEOUT_S:g} s"))
        if self._mux.initialize_result is None and self.killed_because is None and time.monotonic() > self._deadline:
            self.killed_because = f"the server did not answer initialize within {HANDSHAKE_TIMEOUT_S:g} s"
            self._signal(client, "KILL")
        return not ended

    def _end(self, client: Client) -> None:
        try:
            client.exec_stdin(self._workspace_id, self._process_id, close=True)
        except WorkspaceError:
            return  # it has ended already
        if self._kill:
            self._signal(client, "KILL")

    def _signal(self, client: Client, signal: str) -> None:
        try:
            client.exec_kill(self._workspace_id, self._process_id, signal)
        except WorkspaceError as exc:
            log.debug("MCP server %s: not signalled: %s", self._server, exc.message)
