"""WORKSPACE_MCP_CONFIG: the servers it declares, and one line naming file, server and field per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config.mcp import load_mcp_servers
from runtime.errors import ConfigError
from tests.conftest import ROOT

GOOD = """
[[servers]]
name = "tools"
image = "example/tools:1"
command = ["python3", "/srv/server.py"]
env = { LOG_LEVEL = "debug" }
resources = { cpu = 0.5, memory = "512M", disk = "2G" }

[[servers]]
name = "web"
image = "example/web:1"
command = "serve --port 9000"
transport = "streamable-http"
port = 9000
path = "/rpc"
auto_start = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mcp.toml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_mcp_servers(write(tmp_path, text))
    return caught.value.message


def test_an_absent_file_means_no_servers(tmp_path: Path) -> None:
    assert load_mcp_servers(tmp_path / "nothing.toml") == []


def test_every_field_is_read(tmp_path: Path) -> None:
    tools, web = load_mcp_servers(write(tmp_path, GOOD))
    assert (tools.name, tools.image, tools.command) == ("tools", "example/tools:1", ["python3", "/srv/server.py"])
    assert tools.env == {"LOG_LEVEL": "debug"}
    assert (tools.cpu, tools.memory, tools.disk) == (0.5, 512 << 20, 2 << 30)
    assert (tools.auto_start, tools.transport, tools.port) == (True, "stdio", None)
    assert (web.command, web.transport, web.port, web.path, web.auto_start) == (
        "serve --port 9000", "streamable-http", 9000, "/rpc", False,
    )  # fmt: skip
    assert (web.cpu, web.memory, web.disk) == (None, None, None)


def test_the_shipped_example_is_valid() -> None:
    names = [spec.name for spec in load_mcp_servers(ROOT / "configs" / "mcp.example.toml")]
    assert names == ["demo", "demo-http"]


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ('name = "a"\ncommand = "x"', "server 'a': field 'image': missing"),
        ('image = "i"\ncommand = "x"', "server #1: field 'name': missing"),
        ('name = "a"\nimage = "i"', "server 'a': field 'command': missing"),
        ('name = "a b"\nimage = "i"\ncommand = "x"', "field 'name': name='a b' is not a valid MCP server name"),
        ('name = "a"\nimage = "i i"\ncommand = "x"', "field 'image': image='i i' is not a valid image name"),
        ('name = "a"\nimage = "i"\ncommand = []', "field 'command': cmd is empty"),
        ('name = "a"\nimage = "i"\ncommand = "  "', "field 'command': cmd is empty"),
        ('name = "a"\nimage = "i"\ncommand = "x"\ncolour = 1', "field 'colour': unknown"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nenv = { "1X" = "y" }', "field 'env': env name '1X' is not valid"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nresources = { memory = "lots" }', "field 'resources.memory'"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nresources = { memory = "1M" }', "below the least"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nresources = { gpus = 1 }', "field 'resources.gpus': unknown"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nresources = { cpu = 0 }', "field 'cpu': cpu=0 is out of range"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nauto_start = "yes"', "field 'auto_start': expected `bool`"),
        ('name = "a"\nimage = "i"\ncommand = "x"\ntransport = "sse"', "field 'transport'"),
        ('name = "a"\nimage = "i"\ncommand = "x"\ntransport = "streamable-http"', "field 'port': a streamable-http"),
        ('name = "a"\nimage = "i"\ncommand = "x"\nport = 80', "field 'port': only a streamable-http server"),
        (
            'name = "a"\nimage = "i"\ncommand = "x"\ntransport = "streamable-http"\nport = 80\npath = "mcp"',
            "field 'path': 'mcp' must start with /",
        ),
    ],
)
def test_each_mistake_is_named_by_file_server_and_field(tmp_path: Path, server: str, words: str) -> None:
    message = refusal(tmp_path, "[[servers]]\n" + server + "\n")
    assert message.startswith(str(tmp_path / "mcp.toml") + ": server ")
    assert words in message


def test_a_name_declared_twice_is_refused(tmp_path: Path) -> None:
    server = '[[servers]]\nname = "a"\nimage = "i"\ncommand = "x"\n'
    assert "server 'a': field 'name': declared twice" in refusal(tmp_path, server + server)


def test_a_file_that_is_not_toml_is_refused_with_its_name(tmp_path: Path) -> None:
    assert refusal(tmp_path, "[[servers]\n").startswith(
        f"WORKSPACE_MCP_CONFIG={str(tmp_path / 'mcp.toml')!r} is not valid TOML"
    )


def test_servers_must_be_tables_and_nothing_else_is_accepted(tmp_path: Path) -> None:
    assert "servers are declared as [[servers]] tables" in refusal(tmp_path, "[server]\nname = 'a'\n")
    assert "'servers' must be an array of tables" in refusal(tmp_path, "servers = 3\n")
