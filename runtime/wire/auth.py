"""The shared-secret token every request carries.

``WORKSPACE_AUTH_TOKEN`` wins; otherwise the runtime generates one into
``STATE_DIR/token`` (mode 0600) on first start, and local clients read it from there.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

from runtime.config import Settings
from runtime.errors import ConfigError

__all__ = ["load_or_create_token", "read_token"]


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"token file {path} has mode {mode:04o}: it must be private (run: chmod 600 {path})")
    token = path.read_text().strip()
    if len(token) < 16:
        raise ConfigError(f"token file {path} is empty or too short: delete it to have a new one generated")
    return token


def load_or_create_token(settings: Settings) -> str:
    """The server's token: from the environment, the token file, or newly generated."""
    if settings.auth_token:
        return settings.auth_token
    path = settings.token_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return _read(path)
    token = secrets.token_urlsafe(32)
    # Written whole beside it, then linked into place: a reader never sees a half-written
    # file, and of two runtimes starting at once the first link wins and both use its token.
    fd, draft = tempfile.mkstemp(prefix=".token-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        os.link(draft, path)
    except FileExistsError:
        return _read(path)
    finally:
        os.unlink(draft)
    return token


def read_token(settings: Settings) -> str:
    """The client's token: from the environment or the server's token file."""
    if settings.auth_token:
        return settings.auth_token
    try:
        return _read(settings.token_file)
    except FileNotFoundError:
        raise ConfigError(
            f"no token: set WORKSPACE_AUTH_TOKEN or start the runtime once to create {settings.token_file}"
        ) from None
    except PermissionError:
        raise ConfigError(f"cannot read the token file {settings.token_file}: permission denied") from None
