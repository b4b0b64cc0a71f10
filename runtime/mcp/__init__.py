"""MCP servers that auto-start in workspaces, shared by any number of MCP clients.

``config`` (in ``runtime.config.mcp``) reads the servers; ``jsonrpc`` rewrites ids and
keeps the handshake; ``link`` writes a server's stdin; ``runner`` keeps one server
running in its workspace; ``host`` holds them all; ``bridge`` puts a streamable-HTTP
server behind stdio; ``relay`` speaks MCP on stdio for ``workspaces mcp connect``.
"""

from runtime.mcp.host import McpHost
from runtime.mcp.runner import FAILED_TO_START, MCP_LABEL, Door, ServerRunner

__all__ = ["FAILED_TO_START", "MCP_LABEL", "Door", "McpHost", "ServerRunner"]
