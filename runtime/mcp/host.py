"""Every configured MCP server of one runtime: started, listed, called, stopped.

The host runs one ``ServerRunner`` per ``auto_start`` server once the runtime serves
requests, and on start destroys workspaces labelled for servers no longer configured
(or no longer auto-started), so a server removed from the file leaves nothing behind.
``mcp_list`` and ``mcp_call`` are answered through it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from runtime.config.mcp import McpServerSpec
from runtime.errors import NotFound, ProviderUnavailable, WorkspaceError
from runtime.mcp.bridge import bridge_command
from runtime.mcp.runner import MCP_LABEL, Door, ServerRunner
from runtime.messages import McpServerStatus, ReplyTo

__all__ = ["McpHost"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 15.0


class McpHost:
    """The MCP servers of one runtime.

    Args:
        specs: The servers as configured (``runtime.config.mcp.load_mcp_servers``).
        door: How the runners reach the runtime.
    """

    def __init__(self, specs: Sequence[McpServerSpec], door: Door) -> None:
        self._door = door
        self._runners = {spec.name: ServerRunner(spec, _command(spec), door) for spec in specs}
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        """Start the ``auto_start`` servers, and sweep away the workspaces of the others."""
        for runner in self._runners.values():
            if runner.spec.auto_start:
                runner.start()
        self._sweeper = threading.Thread(target=self._sweep, name="mcp-sweep", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        """Stop every server (their workspaces stay, for the next start) and wait for the runners."""
        for runner in self._runners.values():
            runner.stop()
        for runner in self._runners.values():
            runner.join(_STOP_TIMEOUT_S)
        if self._sweeper is not None:
            self._sweeper.join(_STOP_TIMEOUT_S)

    def statuses(self) -> list[McpServerStatus]:
        """Each configured server's status, in the file's order."""
        return [runner.status for runner in self._runners.values()]

    def call(self, reply_to: ReplyTo, name: str, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send ``message`` to the server ``name``: the answer now, or ``None`` (it will be sent).

        Raises:
            NotFound: No server has that name.
            ProviderUnavailable: It is not ready, or not auto-started.
            BadRequest: ``message`` is not a JSON-RPC request or notification.
        """
        runner = self._runners.get(name)
        if runner is None:
            known = ", ".join(self._runners) or "none is configured"
            raise NotFound(f"MCP server {name!r} does not exist (configured: {known})")
        if not runner.spec.auto_start:
            raise ProviderUnavailable(f"MCP server {name} is not started: its auto_start is false", retryable=False)
        return runner.call(reply_to, message)

    def _sweep(self) -> None:
        wanted = {name for name, runner in self._runners.items() if runner.spec.auto_start}
        client = self._door.client()
        try:
            for record in client.list():
                server = record.labels.get(MCP_LABEL)
                if server is not None and server not in wanted and record.state in ("ready", "failed"):
                    log.info("destroying workspace %s of MCP server %s: it is no longer auto-started", record.id,
                             server)  # fmt: skip
                    client.destroy(record.id)
        except WorkspaceError as exc:
            log.warning("MCP servers' old workspaces not swept: %s", exc.message)
        finally:
            client.close()


def _command(spec: McpServerSpec) -> list[str] | str:
    """What runs in the server's workspace: its command, or for streamable HTTP a stdio bridge to it."""
    if spec.transport == "stdio":
        return spec.command
    assert spec.port is not None
    return bridge_command(spec.command, spec.port, spec.path)
