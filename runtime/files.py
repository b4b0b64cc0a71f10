"""``write_file`` and ``read_file``: files under ``/workspace``, moved through exec.

Going through the provider's exec (the data on stdin or stdout, streamed in 1 MiB
chunks) keeps file operations inside the sandbox - the same view of the filesystem the
workspace's own processes have, under gVisor as under runc, and the same code for every
provider. The rules, checked twice:

- here, on the path as given: no ``..`` component, no NUL byte; relative paths are
  relative to ``/workspace``; absolute paths must lie under ``/workspace``;
- inside the workspace, on the resolved path (``realpath -m``, so symbolic links are
  followed as the workspace sees them): it must still lie under ``/workspace``.
"""

from __future__ import annotations

import posixpath

from runtime.errors import BadRequest, InternalError, NotFound, WorkspaceError
from runtime.providers.base import Provider

__all__ = ["MAX_FILE_BYTES", "WORKSPACE_ROOT", "read_file", "workspace_path", "write_file"]

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
    if not path or "\x00" in path:
        raise BadRequest("path is empty or contains a NUL byte")
    if ".." in path.split("/"):
        raise BadRequest(f"path {path!r} contains '..': paths must stay under {WORKSPACE_ROOT}")
    full = posixpath.normpath(path if path.startswith("/") else f"{WORKSPACE_ROOT}/{path}")
    if not full.startswith(WORKSPACE_ROOT + "/"):
        raise BadRequest(f"path {path!r} is outside {WORKSPACE_ROOT}: file operations stay under it")
    return full


def _check(path: str, exit_code: int, stderr: bytes) -> None:
    if exit_code == 0:
        return
    reason = stderr.decode(errors="replace").strip()
    if exit_code == _OUTSIDE:
        raise BadRequest(f"path {path!r} resolves to {reason!r}, outside {WORKSPACE_ROOT} (through a symbolic link)")
    if exit_code == _MISSING:
        raise NotFound(f"no such file: {path}")
    if exit_code == _IS_DIR:
        raise BadRequest(f"{path} is a directory")
    if exit_code == _TOO_BIG:
        raise BadRequest(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: read it in parts with exec")
    raise WorkspaceError(f"file operation on {path} failed (exit {exit_code}): {reason}")


def write_file(provider: Provider, handle: str, path: str, data: bytes, mode: int | None) -> None:
    """Write ``data`` to ``path`` (parents created), then ``chmod`` it to ``mode``."""
    full = workspace_path(path)
    if mode is not None and not 0 <= mode <= 0o7777:
        raise BadRequest(f"mode={mode!r} is not a file mode (0 to 0o7777)")
    argv = ["sh", "-c", _WRITE, "sh", full, "" if mode is None else format(mode, "o")]
    result = provider.exec(handle, argv, cwd=WORKSPACE_ROOT, env={}, stdin=data, timeout_s=None)
    _check(path, result.exit_code, result.stderr)


def read_file(provider: Provider, handle: str, path: str) -> bytes:
    """The contents of ``path``; ``NotFound`` if it does not exist."""
    full = workspace_path(path)
    argv = ["sh", "-c", _READ, "sh", full]
    result = provider.exec(
        handle, argv, cwd=WORKSPACE_ROOT, env={}, stdin=None, timeout_s=None, output_limit=MAX_FILE_BYTES
    )
    _check(path, result.exit_code, result.stderr)
    if len(result.stdout) > MAX_FILE_BYTES:
        raise InternalError(f"{path} grew beyond {MAX_FILE_BYTES >> 20} MiB while it was read")
    return result.stdout
