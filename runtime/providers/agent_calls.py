"""Commands and processes through a workspace agent, in the Provider's terms.

Shared by providers whose workspaces run ``runtime.agent``: they open the channel their
own way and hand it here. A call whose reply never came because the agent died may have
run, so it is never run again: the caller hears ``AgentGone`` with ``sent`` set.
"""

from __future__ import annotations

import signal as signals
from typing import Any

from runtime import files
from runtime.errors import BadRequest, WorkspaceError, error_for_code
from runtime.messages import ExecResult
from runtime.providers.agent_channel import AgentChannel, ProcessSink

__all__ = ["kill", "read_file", "run", "signal_number", "spawn", "write_file", "write_stdin"]

_SLACK_S = 3.0  # the agent enforces timeouts; the runtime waits this much longer for its reply


def _refused(header: dict[str, Any], what: str) -> WorkspaceError:
    """The error for a reply with ``ok`` false.

    A file rule's refusal, or one of the wire error codes the agent uses (``bad_request``,
    ``not_found``, ``conflict``); ``failed`` (an OS error) is a plain ``WorkspaceError``.
    """
    code, error = str(header.get("code", "")), str(header.get("error", "refused by the agent"))
    if code == "refused":
        return files.refusal(what, str(header.get("reason", "")), error)
    return error_for_code(code, f"{what}: {error}", retryable=False)


def _wait(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else timeout_s + _SLACK_S


def run(
    channel: AgentChannel,
    argv: list[str],
    *,
    cwd: str | None,
    env: dict[str, str],
    stdin: bytes | None,
    timeout_s: float | None,
    output_limit: int,
) -> ExecResult:
    """Run a command to its end through the agent."""
    request = {"op": "run", "argv": argv, "cwd": cwd, "env": env, "timeout_s": timeout_s, "limit": output_limit}
    header, payload = channel.call(request, stdin or b"", timeout_s=_wait(timeout_s))
    if not header.get("ok"):
        raise _refused(header, "the command was refused")
    split = int(header["stdout_len"])
    return ExecResult(
        exit_code=int(header["exit_code"]),
        stdout=payload[:split],
        stderr=payload[split:],
        timed_out=bool(header["timed_out"]),
        duration_ms=float(header["duration_ms"]),
        via="agent",
    )


def spawn(
    channel: AgentChannel,
    key: str,
    argv: list[str],
    *,
    cwd: str | None,
    env: dict[str, str],
    stdin: bytes | None,
    stdin_open: bool,
    timeout_s: float | None,
    sink: ProcessSink,
) -> int:
    """Start a command whose output goes to ``sink``; return its pid in the workspace."""
    request = {
        "op": "spawn", "key": key, "argv": argv, "cwd": cwd, "env": env,
        "timeout_s": timeout_s, "stdin_open": stdin_open,
    }  # fmt: skip
    header, _ = channel.call(request, stdin or b"", timeout_s=_SLACK_S * 3, sink=sink)
    if not header.get("ok"):
        raise _refused(header, "the command could not start")
    return int(header["pid"])


def write_stdin(channel: AgentChannel, key: str, data: bytes, close: bool) -> None:
    """Feed (and maybe close) a spawned process's standard input."""
    header, _ = channel.call({"op": "stdin", "key": key, "close": close}, data, timeout_s=_SLACK_S * 3)
    if not header.get("ok"):
        raise _refused(header, f"stdin of process {key}")


def kill(channel: AgentChannel, key: str, signal: int) -> None:
    """Send ``signal`` to a spawned process's whole process group."""
    header, _ = channel.call({"op": "kill", "key": key, "signal": signal}, timeout_s=_SLACK_S * 3)
    if not header.get("ok"):
        raise _refused(header, f"signal to process {key}")


def read_file(channel: AgentChannel, full: str) -> bytes:
    """The contents of ``full`` (an absolute path from ``files.workspace_path``)."""
    header, payload = channel.call({"op": "read", "path": full, "limit": files.MAX_FILE_BYTES}, timeout_s=60.0)
    if not header.get("ok"):
        raise _refused(header, full)
    return payload


def write_file(channel: AgentChannel, full: str, data: bytes, mode: int | None) -> None:
    """Write ``data`` to ``full`` (parents created), then ``chmod`` it to ``mode``."""
    header, _ = channel.call({"op": "write", "path": full, "mode": mode}, data, timeout_s=60.0)
    if not header.get("ok"):
        raise _refused(header, full)


def signal_number(name: str | int) -> int:
    """``TERM``, ``SIGTERM``, ``15`` and ``"15"`` all mean 15; anything else is ``BadRequest``."""
    if isinstance(name, int) or name.isdigit():
        number = int(name)
        if 1 <= number < signals.NSIG:
            return number
        raise BadRequest(f"signal={name!r} is not a signal number (1 to {signals.NSIG - 1})")
    upper = name.upper()
    try:
        return int(signals.Signals[upper if upper.startswith("SIG") else f"SIG{upper}"])
    except KeyError:
        raise BadRequest(f"signal={name!r} is not a signal name (e.g. TERM, KILL, INT, HUP)") from None
