"""The deployment guide's "MCP servers not auto-starting" steps, as ``workspaces doctor`` checks.

1. ``ENABLE_AGENT_WORKSPACES`` is true (and ``WORKSPACE_MCP_CONFIG`` reads without error);
2. the runtime's view of each server (``mcp_list``): a failed one is what the log reports
   as "failed to auto-start MCP servers", with the reason;
3. each auto-started server's image is present (no registry is needed: build or load it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import docker
import docker.errors

from runtime.config import Settings
from runtime.config.mcp import McpServerSpec, load_mcp_servers
from runtime.errors import ConfigError
from runtime.monitoring.checks import Check

__all__ = ["mcp_config", "mcp_images", "mcp_status"]

_FAILED_TO_START = "failed to auto-start MCP servers"  # the runtime's log phrase (runtime.mcp)


def mcp_config(settings: Settings) -> tuple[Check, list[McpServerSpec]]:
    """Step 1: the file reads, and the master switch lets its servers start; the servers to check further."""
    path = settings.mcp_config
    try:
        specs = load_mcp_servers(path)
    except ConfigError as exc:
        return Check("mcp servers", "FAIL", exc.message, f"correct {path} (see configs/mcp.example.toml)"), []
    auto = [spec for spec in specs if spec.auto_start]
    if not specs:
        return Check("mcp servers", "PASS", f"none configured ({path} is absent or empty)"), []
    names = ", ".join(spec.name for spec in auto) or "none"
    detail = f"{len(specs)} in {path}; auto-started: {names}"
    if auto and not settings.enabled:
        return Check(
            "mcp servers",
            "FAIL",
            f"{detail}, but ENABLE_AGENT_WORKSPACES is false: none starts",
            "set ENABLE_AGENT_WORKSPACES=true (`make run` does) and restart the runtime",
        ), auto
    return Check("mcp servers", "PASS", detail), auto


def mcp_images(client: docker.DockerClient, specs: Sequence[McpServerSpec]) -> Check | None:
    """Step 3: every auto-started server's image is present (``None``: no server to check)."""
    if not specs:
        return None
    missing = []
    for spec in specs:
        try:
            client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            missing.append(f"{spec.image} (server {spec.name})")
    if missing:
        return Check(
            "mcp images",
            "FAIL",
            "not present: " + ", ".join(missing),
            "build or load each image (`docker build`, `docker load`; the demo: scripts/build-mcp-demo-image.sh)",
        )
    return Check("mcp images", "PASS", f"{len(specs)} image(s) present")


def mcp_status(servers: Sequence[dict[str, Any]]) -> Check | None:
    """Step 2: what the running runtime says of each server (``None``: it has none)."""
    if not servers:
        return None
    failed = [server for server in servers if server["state"] == "failed"]
    starting = [server["name"] for server in servers if server["state"] == "starting"]
    ready = [server["name"] for server in servers if server["state"] == "ready"]
    if failed:
        reasons = "; ".join(f"{server['name']}: {server['error']}" for server in failed)
        return Check(
            "mcp status",
            "FAIL",
            f"{len(failed)} failed ({reasons}); the log says `{_FAILED_TO_START}` for each attempt",
            "fix the reason (image, command, resources); the runtime retries on its own with backoff",
        )
    if starting:
        return Check(
            "mcp status",
            "WARN",
            f"starting: {', '.join(starting)}; ready: {', '.join(ready) or 'none'}",
            "wait a moment and check again (`workspaces mcp ls`)",
        )
    return Check("mcp status", "PASS", f"ready: {', '.join(ready) or 'none (none auto-started)'}")
