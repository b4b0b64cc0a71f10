"""One MCP server kept running: its workspace, its process, its handshake, its restarts.

A ``ServerRunner`` is one thread and a client of the runtime like any other: it finds
its server's workspace by label (reusing it across runtime restarts) or creates a
persistent one, starts the server's command there as a streamed process with stdin open
(through the agent), does the ``initialize`` handshake, and then reads the server's
output in order (``runtime.wire.follow``), handing each message to its ``Mux``. When the
process ends, or anything on the way fails, it logs ``failed to auto-start MCP servers``
with the server and the reason, answers the calls in flight, waits (1 s, doubling to 60 s;
back to 1 s after a minute up) and starts again. What it does is seen in ``status`` and
as ``mcp.state`` events.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from runtime.config.mcp import McpServerSpec
from runtime.errors import ProviderUnavailable, WorkspaceError
from runtime.mcp.jsonrpc import Answer, Forward, Lines, Mux, Notify, Reply
from runtime.mcp.link import Link
from runtime.messages import (
    Event,
    McpNotification,
    McpServerChanged,
    McpServerStatus,
    ProcessExited,
    ProcessInfo,
    ReplyTo,
    Truncated,
    exec_topic_prefix,
)
from runtime.wire.client import Client
from runtime.wire.outbox import Outbox
from runtime.wire.streams import follow
from runtime.wire.subscriber import Subscriber

__all__ = ["MCP_LABEL", "Door", "ServerRunner"]

log = logging.getLogger(__name__)

MCP_LABEL: Final = "agent-workspaces.mcp"
"""The label naming the MCP server a workspace runs."""
FAILED_TO_START: Final = "failed to auto-start MCP servers"
_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 60.0
_STABLE_S = 60.0
_CREATE_TIMEOUT_S = 300.0
_STDERR_LINES = 20


@dataclass(frozen=True)
class Door:
    """How a runner reaches the runtime it runs in (each call makes a new, thread-bound object)."""

    client: Callable[[], Client]
    subscribe: Callable[[tuple[str, ...]], Subscriber]
    outbox: Callable[[], Outbox]
    publish: Callable[[Event], object]


@dataclass(frozen=True)
class _Live:
    mux: Mux
    link: Link


class ServerRunner:
    """Keeps one MCP server running (see the module docstring).

    Args:
        spec: The server as configured.
        command: The command run in its workspace (the spec's, or a bridge to it).
        door: The runtime's doors.
    """

    def __init__(self, spec: McpServerSpec, command: list[str] | str, door: Door) -> None:
        self.spec = spec
        self._command = command
        self._door = door
        self._lock = threading.Lock()
        self._status = McpServerStatus(
            name=spec.name, state="stopped", workspace_id=None, restarts=0, error=None, image=spec.image,
            transport=spec.transport,
        )  # fmt: skip
        self._live: _Live | None = None
        self._link: Link | None = None  # while a process runs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mcp-{spec.name}", daemon=True)

    # ------------------------------------------------------------------ control

    @property
    def status(self) -> McpServerStatus:
        """What ``mcp_list`` says of this server."""
        with self._lock:
            return self._status

    def start(self) -> None:
        """Start keeping the server running."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the server to end (its stdin is closed) and stop restarting it; see ``join``."""
        self._stop.set()
        link = self._link
        if link is not None:
            link.finish(kill=False)

    def join(self, timeout_s: float) -> None:
        """Wait for the runner to end."""
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def call(self, reply_to: ReplyTo, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send a caller's message; the answer now, or ``None`` when the server's response will be sent.

        Raises:
            ProviderUnavailable: The server is not ready (retryable).
            BadRequest: ``message`` is not a JSON-RPC request or notification.
        """
        live, status = self._live, self.status
        if live is None or status.state != "ready":
            why = f": {status.error}" if status.error else ""
            raise ProviderUnavailable(f"MCP server {self.spec.name} is {status.state}{why}", retryable=True)
        action = live.mux.request(reply_to, message)
        if isinstance(action, Answer):
            return action.result
        live.link.send(action.line)
        return None if "id" in message else {}

    # ------------------------------------------------------------------ the thread

    def _set(self, **changes: Any) -> None:
        with self._lock:
            old, new = self._status, msgspec.structs.replace(self._status, **changes)
            self._status = new
        if (old.state, old.workspace_id, old.restarts, old.error) != (new.state, new.workspace_id, new.restarts,
                                                                      new.error):  # fmt: skip
            changed = McpServerChanged(
                name=new.name, state=new.state, workspace_id=new.workspace_id, restarts=new.restarts, error=new.error
            )
            try:
                self._door.publish(changed)
            except WorkspaceError:  # the state log has closed: a runner outliving the runtime's stop says nothing
                log.debug("MCP server %s is %s (not published: the runtime has stopped)", new.name, new.state)

    def _run(self) -> None:
        delay = _BACKOFF_FIRST_S
        client = self._door.client()
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    reason = self._serve(client)
                except WorkspaceError as exc:
                    reason = exc.message
                except Exception as exc:  # a bug must not end the restarts
                    log.exception("MCP server %s: unexpected error", self.spec.name)
                    reason = f"internal error: {exc!r}"
                if self._stop.is_set():
                    break
                if time.monotonic() - began > _STABLE_S:
                    delay = _BACKOFF_FIRST_S
                log.error("%s: %s: %s (retrying in %g s)", FAILED_TO_START, self.spec.name, reason, delay)
                self._set(state="failed", error=reason, process_id=None, retry_at=time.time() + delay)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, _BACKOFF_MAX_S)
                self._set(restarts=self.status.restarts + 1)
        finally:
            client.close()
            self._set(state="stopped", process_id=None, retry_at=None)

    def _serve(self, client: Client) -> str:
        """Run the server once; return why it ended."""
        self._set(state="starting", retry_at=None)
        workspace_id = self._workspace(client)
        self._set(workspace_id=workspace_id)
        with self._door.subscribe((exec_topic_prefix(workspace_id),)) as events:
            process = client.spawn(workspace_id, self._command, stdin_open=True, env=dict(self.spec.env))
            self._set(process_id=process.process_id)
            mux = Mux()
            link = Link(
                self.spec.name, workspace_id=workspace_id, process_id=process.process_id, mux=mux,
                client=self._door.client, outbox=self._door.outbox,
            )  # fmt: skip
            link.start()
            self._link = link
            link.send(mux.handshake())
            outbox = self._door.outbox()
            ended = False
            try:
                reason, ended = self._read(client, events, process, _Live(mux, link), outbox)
            finally:
                self._live = self._link = None
                link.finish(kill=not ended and not self._stop.is_set())
                link.join()
                lost = ProviderUnavailable(
                    f"MCP server {self.spec.name} stopped before it answered ({reason if ended else 'stopping'}); "
                    "the outcome is unknown",
                    retryable=False,
                )
                for reply_to in mux.abandon():
                    outbox.fail(reply_to, lost)
                outbox.close()
            return link.killed_because or reason

    def _read(
        self, client: Client, events: Subscriber, process: ProcessInfo, live: _Live, outbox: Outbox
    ) -> tuple[str, bool]:
        """Relay the server's output until it ends; return why, and whether the process has ended."""
        lines, stderr = Lines(), collections.deque[str](maxlen=_STDERR_LINES)
        for event in follow(client, events, process, stop=self._stop):
            if isinstance(event, Truncated):
                log.warning("MCP server %s: %d output chunk(s) lost; responses in them are lost", self.spec.name,
                            event.missed)  # fmt: skip
                lines.reset()
                continue
            if isinstance(event, ProcessExited):
                return self._exit_reason(event, stderr), True
            if event.stream == "stderr":
                text = event.data.decode(errors="replace")
                stderr.extend(line for line in text.splitlines() if line.strip())
                log.debug("MCP server %s stderr: %s", self.spec.name, text.rstrip())
                continue
            for line in lines.feed(event.data):
                refusal = self._handle(line, live, outbox)
                if refusal:
                    return refusal, False
        return "stopping", False

    def _handle(self, line: bytes, live: _Live, outbox: Outbox) -> str | None:
        """One line of the server's stdout; a reason to stop the server if its handshake was refused."""
        try:
            message = msgspec.json.decode(line)
        except msgspec.DecodeError:
            log.warning("MCP server %s wrote a line that is not JSON-RPC: %.200r", self.spec.name, line)
            return None
        action = live.mux.incoming(message)
        if isinstance(action, Reply):
            outbox.reply(action.reply_to, action.response)
        elif isinstance(action, Notify):
            self._door.publish(McpNotification(name=self.spec.name, message=action.message))
        elif isinstance(action, Forward):
            live.link.send(action.line)
        elif self._live is None and live.mux.initialize_error is not None:
            return f"the server refused initialize: {live.mux.initialize_error.get('message', '')}"
        elif self._live is None and live.mux.initialize_result is not None:
            live.link.send(Mux.initialized())
            self._live = live
            self._set(state="ready", error=None)
            version = live.mux.initialize_result.get("protocolVersion")
            log.info("MCP server %s ready in workspace %s (MCP %s)", self.spec.name, self.status.workspace_id,
                     version)  # fmt: skip
        return None

    def _exit_reason(self, exited: ProcessExited, stderr: collections.deque[str]) -> str:
        how = f"exit code {exited.exit_code}" if exited.exit_code is not None else (exited.error or "it was lost")
        last = f"; its last stderr: {stderr[-1][:300]}" if stderr else ""
        return f"the server process ended ({how}){last}"

    def _workspace(self, client: Client) -> str:
        """The server's workspace: the ready one labelled for it, or a new persistent one."""
        spec, keep = self.spec, None
        for record in client.list(labels={MCP_LABEL: spec.name}):
            fits = record.image == spec.image and (spec.cpu is None or record.cpu == spec.cpu)
            fits = fits and (spec.memory is None or record.memory_bytes == spec.memory)
            if record.state == "ready" and fits and keep is None:
                keep = record.id
            elif record.state == "ready":  # another image or size, or a duplicate
                client.destroy(record.id)
        if keep is not None:
            log.info("MCP server %s: reusing its workspace %s", spec.name, keep)
            return keep
        try:
            record = client.create(
                image=spec.image, cpu=spec.cpu, memory=spec.memory, disk=spec.disk, labels={MCP_LABEL: spec.name},
                persistent=True, timeout_s=_CREATE_TIMEOUT_S,
            )  # fmt: skip
        except WorkspaceError:
            try:  # a failed try leaves nothing behind, not even its record
                for failed in client.list(labels={MCP_LABEL: spec.name}, state="failed"):
                    client.destroy(failed.id)
            except WorkspaceError as exc:
                log.warning("MCP server %s: its failed workspace is not destroyed yet: %s", spec.name, exc.message)
            raise
        log.info("MCP server %s: created its workspace %s", spec.name, record.id)
        return record.id
