"""MCP servers to run: the TOML file ``WORKSPACE_MCP_CONFIG`` names, read into ``McpServerSpec``.

::

    [[servers]]
    name = "tools"                          # 1-63 of [A-Za-z0-9._-]
    image = "agent-workspaces/mcp-demo:latest"
    command = ["python3", "/opt/mcp/server.py"]   # or one string, run by sh -c
    auto_start = true                       # default true
    transport = "stdio"                     # or "streamable-http" (then `port`, and `path`)
    env = { LOG_LEVEL = "info" }
    resources = { cpu = 0.5, memory = "512M", disk = "1G" }

An absent file means no servers. Every refusal names the file, the server and the field,
in one line (``ConfigError``), so start-up and ``workspaces doctor`` say exactly what to fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from runtime.config.values import MIN_MEMORY_BYTES, parse_size
from runtime.errors import ConfigError
from runtime.messages.rules import Cmd, Cpu, EnvName, EnvValue, ImageName, McpName, broken_rule

__all__ = ["McpServerSpec", "load_mcp_servers"]

Transport = Literal["stdio", "streamable-http"]

_FIELDS = ("name", "image", "command", "auto_start", "transport", "port", "path", "env", "resources")
_RESOURCES = ("cpu", "memory", "disk")


class McpServerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One MCP server as configured.

    Attributes:
        name: Its name in ``mcp_list``, ``mcp_call`` and the workspace's label.
        image: The image of its workspace.
        command: The server's command: argv, or a string for ``sh -c``. A ``stdio``
            server speaks MCP on its stdin and stdout.
        env: Environment of the command (and of its workspace).
        cpu, memory, disk: Its workspace's resources (``None``: the defaults).
        auto_start: Started with the runtime (and kept running).
        transport: ``stdio``, or ``streamable-http``: the command listens on ``port``
            inside its workspace at ``path``, and the runtime reaches it from within.
        port, path: Where a ``streamable-http`` server listens.
    """

    name: McpName
    image: ImageName
    command: Cmd
    env: dict[EnvName, EnvValue] = {}
    cpu: Cpu | None = None
    memory: int | None = None
    disk: int | None = None
    auto_start: bool = True
    transport: Transport = "stdio"
    port: int | None = None
    path: str = "/mcp"


def load_mcp_servers(path: Path) -> list[McpServerSpec]:
    """The servers declared in ``path`` (none when it does not exist).

    Raises:
        ConfigError: The file is unreadable or not valid TOML, or a server is wrong.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"WORKSPACE_MCP_CONFIG={str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"WORKSPACE_MCP_CONFIG={str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"servers"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}: servers are declared as [[servers]] tables")
    servers = data.get("servers", [])
    if not isinstance(servers, list) or not all(isinstance(server, dict) for server in servers):
        raise ConfigError(f"{path}: 'servers' must be an array of tables ([[servers]])")
    specs: list[McpServerSpec] = []
    for index, raw in enumerate(servers, 1):
        spec = _server(path, index, raw)
        if any(seen.name == spec.name for seen in specs):
            raise ConfigError(f"{path}: server {spec.name!r}: field 'name': declared twice")
        specs.append(spec)
    return specs


def _server(path: Path, index: int, raw: dict[str, Any]) -> McpServerSpec:
    name = raw.get("name")
    where = f"{path}: server {name!r}" if isinstance(name, str) and name else f"{path}: server #{index}"

    def refuse(field: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: field {field!r}: {why}")

    for field in ("name", "image", "command"):
        if field not in raw:
            raise refuse(field, "missing")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise refuse(unknown[0], f"unknown: expected one of {', '.join(_FIELDS)}")
    values = {key: value for key, value in raw.items() if key != "resources"}
    resources = raw.get("resources", {})
    if not isinstance(resources, dict):
        raise refuse("resources", 'expected a table such as { cpu = 1, memory = "512M" }')
    for key, value in resources.items():
        if key not in _RESOURCES:
            raise refuse(f"resources.{key}", f"unknown: expected one of {', '.join(_RESOURCES)}")
        if key == "cpu":
            values["cpu"] = value
            continue
        try:
            values[key] = parse_size(value)
        except ValueError:
            raise refuse(f"resources.{key}", f'{value!r} is not a size such as "512M" or "4G"') from None
        if key == "memory" and values[key] < MIN_MEMORY_BYTES:
            raise refuse("resources.memory", f"{value!r} is below the least a workspace may have (6M)")
    for field, value in values.items():  # each rule's own words, naming the field
        problem = broken_rule(McpServerSpec, {field: value})
        if problem:
            raise refuse(field, problem)
    try:
        spec = msgspec.convert(values, McpServerSpec)
    except msgspec.ValidationError as exc:
        raise refuse(_field_of(exc), _plain(exc)) from None
    if spec.transport == "streamable-http":
        if spec.port is None or not 1 <= spec.port <= 65535:
            raise refuse("port", "a streamable-http server needs the port it listens on (1-65535)")
        if not spec.path.startswith("/"):
            raise refuse("path", f"{spec.path!r} must start with /")
    elif spec.port is not None:
        raise refuse("port", "only a streamable-http server listens on a port")
    return spec


def _field_of(exc: msgspec.ValidationError) -> str:
    """The field a msgspec error is about (its message ends ``- at `$.field...```)."""
    text = str(exc)
    if "`$." not in text:
        return "?"
    return text.rsplit("`$.", 1)[1].rstrip("`").split("[", 1)[0].split(".", 1)[0]


def _plain(exc: msgspec.ValidationError) -> str:
    return str(exc).split(" - at ", 1)[0].replace("Expected", "expected")
