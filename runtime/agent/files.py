"""``write_file`` and ``read_file``: files under ``/workspace``, moved inside the sandbox.

Files move inside the workspace - through its agent (``runtime.agent.program``'s ``read``
and ``write``), or, without one, through a command with the data on stdin or stdout - so a file
operation sees the filesystem the workspace's own processes see, under gVisor as under
runc. The rules, checked twice:

- here, on the path as given: no ``..`` component, no NUL byte; relative paths are
  relative to ``/workspace``; absolute paths must lie under ``/workspace``;
- inside the workspace, on the resolved path (symbolic links followed as the workspace
  sees them, like ``realpath -m``): it must still lie under ``/workspace``.

Both ways report a refusal by one of the ``REASONS``, and ``refusal`` words it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from runtime.errors import BadRequest, InternalError, NotFound, WorkspaceError
from runtime.messages import Command, ExecResult

__all__ = [
    "MAX_FILE_BYTES",
    "REASONS",
    "WORKSPACE_ROOT",
    "Run",
    "read_by_exec",
    "refusal",
    "workspace_path",
    "write_by_exec",
]

Run = Callable[[Command], ExecResult]
"""Runs a command in the workspace without its agent (e.g. through ``docker exec``)."""

WORKSPACE_ROOT = "/workspace"
MAX_FILE_BYTES = 64 << 20

# Exit codes the scripts below use to say what went wrong.
_FAILED, _OUTSIDE, _MISSING, _TOO_BIG, _IS_DIR = 42, 43, 44, 45, 46

_RESOLVE = f"""p=$(realpath -m -- "$1") || exit {_FAILED}
case "$p" in {WORKSPACE_ROOT}/*) ;; *) echo "$p" >&2; exit {_OUTSIDE};; esac
"""
_WRITE = (
    _RESOLVE
    + f"""[ -d "$p" ] && exit {_IS_DIR}
mkdir -p -- "$(dirname -- "$p")" || exit {_FAILED}
cat > "$p" || exit {_FAILED}
[ -z "$2" ] || chmod "$2" "$p" || exit {_FAILED}
"""
)
_READ = (
    _RESOLVE
    + f"""[ -e "$p" ] || exit {_MISSING}
[ -d "$p" ] && exit {_IS_DIR}
[ "$(stat -c %s -- "$p")" -le {MAX_FILE_BYTES} ] || exit {_TOO_BIG}
exec cat -- "$p"
"""
)


def workspace_path(path: str) -> str:
    """The absolute path for ``path`` under ``/workspace``, or ``BadRequest``."""
    if not path or "\x00" in path or "\n" in path:
        # (a line break would not survive the fallback's shell: `$(realpath ...)` strips it)
        raise BadRequest("path is empty or contains a NUL byte or a line break")
    if ".." in path.split("/"):
        raise BadRequest(f"path {path!r} contains '..': paths must stay under {WORKSPACE_ROOT}")
    full = posixpath.normpath(path if path.startswith("/") else f"{WORKSPACE_ROOT}/{path}")
    if not full.startswith(WORKSPACE_ROOT + "/"):
        raise BadRequest(f"path {path!r} is outside {WORKSPACE_ROOT}: file operations stay under it")
    return full


_PATH_REFUSED = ("File name too long", "Not a directory", "File exists", "Is a directory", "symbolic links")
"""What coreutils says when a path cannot be used as given: the client's to fix, as the agent says it."""

REASONS = {_OUTSIDE: "outside", _MISSING: "missing", _TOO_BIG: "too_big", _IS_DIR: "is_dir"}
"""Why a file operation was refused inside the workspace (by the scripts' exit codes)."""


def refusal(path: str, reason: str, detail: str = "") -> WorkspaceError:
    """The error for a file operation on ``path`` refused for ``reason`` (one of ``REASONS``)."""
    if reason == "outside":
        return BadRequest(f"path {path!r} resolves to {detail!r}, outside {WORKSPACE_ROOT} (through a symbolic link)")
    if reason == "missing":
        return NotFound(f"no such file: {path}")
    if reason == "is_dir":
        return BadRequest(f"{path} is a directory")
    if reason == "too_big":
        return BadRequest(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: read it in parts with exec")
    return WorkspaceError(f"file operation on {path} failed: {detail or reason}")


def _check(path: str, exit_code: int, stderr: bytes) -> None:
    if exit_code == 0:
        return
    detail = stderr.decode(errors="replace").strip()
    if exit_code in REASONS:
        raise refusal(path, REASONS[exit_code], detail)
    if exit_code == _FAILED and any(words in detail for words in _PATH_REFUSED):
        raise BadRequest(f"file operation on {path} failed: {detail}")
    raise WorkspaceError(f"file operation on {path} failed (exit {exit_code}): {detail}")


def write_by_exec(run: Run, full: str, data: bytes, mode: int | None) -> None:
    """Write ``data`` to ``full`` (an absolute path from ``workspace_path``) with ``run``."""
    argv = ["sh", "-c", _WRITE, "sh", full, "" if mode is None else format(mode, "o")]
    result = run(Command(argv=argv, cwd=WORKSPACE_ROOT, stdin=data))
    _check(full, result.exit_code, result.stderr)


def read_by_exec(run: Run, full: str) -> bytes:
    """The contents of ``full`` read with ``run``; ``NotFound`` if it does not exist."""
    result = run(Command(argv=["sh", "-c", _READ, "sh", full], cwd=WORKSPACE_ROOT, output_limit=MAX_FILE_BYTES))
    _check(full, result.exit_code, result.stderr)
    if len(result.stdout) > MAX_FILE_BYTES:
        raise InternalError(f"{full} grew beyond {MAX_FILE_BYTES >> 20} MiB while it was read")
    return result.stdout
