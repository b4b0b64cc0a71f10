"""One call to a workspace agent for each thing a provider does inside a workspace.

A call whose reply never came because the agent died may have run, so it is never run
again: the caller hears ``AgentGone`` with ``sent`` set.
"""

from __future__ import annotations

from typing import Any

from runtime.agent import files
from runtime.agent.channel import AgentChannel
from runtime.errors import WorkspaceError, error_for_code
from runtime.messages import Command, ExecResult
from runtime.providers.base import ProcessSink

__all__ = ["kill", "read_file", "run", "spawn", "write_file", "write_stdin"]

_SLACK_S = 3.0  # the agent enforces timeouts; the runtime waits this much longer for its reply
_FILE_WAIT_S = 60.0


def _refused(header: dict[str, Any], what: str) -> WorkspaceError:
    """The error for a reply with ``ok`` false.

    A file rule's refusal, or one of the wire error codes the agent uses (``bad_request``,
    ``not_found``, ``conflict``); ``failed`` (an OS error) is a plain ``WorkspaceError``.
    """
    code, error = str(header.get("code", "")), str(header.get("error", "refused by the agent"))
    if code == "refused":
        return files.refusal(what, str(header.get("reason", "")), error)
    return error_for_code(code, f"{what}: {error}", retryable=False)


def _request(op: str, command: Command) -> dict[str, Any]:
    return {"op": op, "argv": command.argv, "cwd": command.cwd, "env": command.env, "timeout_s": command.timeout_s}


def _checked(channel: AgentChannel, request: dict[str, Any], what: str, **call: Any) -> tuple[dict[str, Any], bytes]:
    header, payload = channel.call(request, **call)
    if not header.get("ok"):
        raise _refused(header, what)
    return header, payload


def run(channel: AgentChannel, command: Command) -> ExecResult:
    """Run a command to its end through the agent."""
    wait = None if command.timeout_s is None else command.timeout_s + _SLACK_S
    request = {**_request("run", command), "limit": command.output_limit}
    header, payload = _checked(
        channel, request, "the command was refused", payload=command.stdin or b"", timeout_s=wait
    )
    try:
        split = int(header["stdout_len"])
        return ExecResult(
            exit_code=int(header["exit_code"]),
            stdout=payload[:split],
            stderr=payload[split:],
            timed_out=bool(header["timed_out"]),
            duration_ms=float(header["duration_ms"]),
            via="agent",
        )
    except (KeyError, TypeError, ValueError, OverflowError):  # forged by code in the workspace
        raise channel.broken("a malformed reply to a command") from None


def spawn(channel: AgentChannel, key: str, command: Command, sink: ProcessSink) -> int:
    """Start a command whose output goes to ``sink``; return its pid in the workspace."""
    request = {**_request("spawn", command), "key": key, "stdin_open": command.stdin_open}
    header, _ = _checked(
        channel, request, "the command could not start", payload=command.stdin or b"", timeout_s=_SLACK_S * 3,
        sink=sink,
    )  # fmt: skip
    try:
        return int(header["pid"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise channel.broken("a malformed reply to a process start") from None


def write_stdin(channel: AgentChannel, key: str, data: bytes, close: bool) -> None:
    """Feed (and maybe close) a spawned process's standard input."""
    request = {"op": "stdin", "key": key, "close": close}
    _checked(channel, request, f"stdin of process {key}", payload=data, timeout_s=_SLACK_S * 3)


def kill(channel: AgentChannel, key: str, signal: int) -> None:
    """Send ``signal`` to a spawned process's whole process group."""
    _checked(channel, {"op": "kill", "key": key, "signal": signal}, f"signal to process {key}", timeout_s=_SLACK_S * 3)


def read_file(channel: AgentChannel, full: str) -> bytes:
    """The contents of ``full`` (an absolute path from ``files.workspace_path``)."""
    request = {"op": "read", "path": full, "limit": files.MAX_FILE_BYTES}
    return _checked(channel, request, full, timeout_s=_FILE_WAIT_S)[1]


def write_file(channel: AgentChannel, full: str, data: bytes, mode: int | None) -> None:
    """Write ``data`` to ``full`` (parents created), then ``chmod`` it to ``mode``."""
    _checked(channel, {"op": "write", "path": full, "mode": mode}, full, payload=data, timeout_s=_FILE_WAIT_S)
