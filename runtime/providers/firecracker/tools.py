"""Host tools the firecracker provider runs (``mkfs.ext4``, ``apt-get``, ``dpkg-deb``...), their failures translated.

One place turns a tool that is missing, hangs or fails into ``ProviderUnavailable``
naming the tool, what it was for and the end of its stderr.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runtime.errors import ProviderUnavailable

__all__ = ["run_tool"]


def run_tool(argv: list[str], what: str, *, install: str, timeout_s: float, cwd: Path | None = None) -> bytes:
    """Run ``argv`` and return its stdout.

    Args:
        argv: The tool and its arguments.
        what: What it was run for (the start of every error message).
        install: How to get the tool when it is missing (said in the error).
        timeout_s: How long it may take.
        cwd: Where it runs.

    Raises:
        ProviderUnavailable: It is missing, timed out or failed (its stderr's end quoted).
    """
    try:
        return subprocess.run(argv, check=True, capture_output=True, cwd=cwd, timeout=timeout_s).stdout
    except FileNotFoundError as exc:
        raise ProviderUnavailable(f"{what}: {argv[0]} not found ({install})") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProviderUnavailable(f"{what}: {argv[0]} did not finish in {timeout_s:g} s") from exc
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip()[-500:] or f"exit status {exc.returncode}"
        raise ProviderUnavailable(f"{what} failed: {detail}") from exc
