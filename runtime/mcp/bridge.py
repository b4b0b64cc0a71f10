"""The command that runs a streamable-HTTP MCP server behind a stdio bridge (``bridge_program``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["bridge_command"]


@cache
def _program() -> str:
    return Path(__file__).with_name("bridge_program.py").read_text()


def bridge_command(command: list[str] | str, port: int, path: str) -> list[str]:
    """``python3 -c <bridge> PORT PATH -- COMMAND...`` (a string command runs under ``sh -c``)."""
    argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
    return ["python3", "-c", _program(), str(port), path, "--", *argv]
