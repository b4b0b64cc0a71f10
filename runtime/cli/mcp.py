"""``workspaces mcp ls`` and ``workspaces mcp connect NAME``: the runtime's MCP servers."""

from __future__ import annotations

import argparse
import time

from runtime.cli.relay import relay
from runtime.cli.tables import print_json, table
from runtime.config import load_settings
from runtime.wire import Client
from runtime.wire.auth import read_token
from runtime.wire.security import client_curve

__all__ = ["add_parsers", "mcp"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``mcp`` subcommands."""
    parser = commands.add_parser("mcp", help="MCP servers: ls, connect")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("ls", help="the configured MCP servers and their states")
    listing.add_argument("--json", action="store_true")
    connect = actions.add_parser(
        "connect", help="speak MCP on stdin/stdout, relayed to the server (an MCP client's server command)"
    )
    connect.add_argument("name")
    connect.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS", help="retry calls this long while it starts (60)"
    )


def mcp(client: Client, args: argparse.Namespace) -> int:
    """``workspaces mcp ACTION``."""
    if args.action == "connect":
        settings = load_settings()  # read like the client's (environment, WORKSPACE_CONFIG, STATE_DIR)
        curve = client_curve(settings)
        return relay(client.endpoint, args.events_endpoint, read_token(settings), args.name, wait_s=args.wait,
                     curve=curve)  # fmt: skip
    servers = client.mcp_list()
    if args.json:
        print_json(servers)
        return 0
    now = time.time()
    rows = [["NAME", "STATE", "WORKSPACE", "RESTARTS", "TRANSPORT", "ERROR"]]
    for server in servers:
        error = server.error or ""
        if server.state == "failed" and server.retry_at is not None:
            error = f"{error} (retry in {max(0.0, server.retry_at - now):.0f} s)"
        rows.append([server.name, server.state, server.workspace_id or "-", str(server.restarts), server.transport,
                     error])  # fmt: skip
    print(table(rows))
    return 0
