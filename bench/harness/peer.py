"""The peer, llm-sandbox, in its own virtualenv, driven step by step from the harness.

The peer is installed by the harness, never into the project's environment: a
virtualenv at ``bench/.peer-venv`` (gitignored) with ``llm-sandbox[docker]`` pinned to
``PEER_VERSION`` (the ``docker`` extra brings the Docker backend). ``ensure_venv`` is
idempotent and fast once the venv holds that version. ``PeerProcess`` runs
``peer_driver.py`` under the venv's Python, so the harness can interleave the peer's
open, exec, agent step and close with ours and the raw baseline's, one call at a time.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["PEER_LABEL", "PEER_NAME", "PEER_VERSION", "PeerError", "PeerProcess", "ensure_venv", "venv_python"]

PEER_NAME = "llm-sandbox"
PEER_VERSION = "0.3.46"
PEER_LABEL = f"{PEER_NAME} {PEER_VERSION}"
VENV = Path(__file__).resolve().parents[1] / ".peer-venv"
DRIVER = Path(__file__).resolve().with_name("peer_driver.py")
IMAGE = "agent-workspaces/base:bookworm"


class PeerError(RuntimeError):
    """The peer could not be installed or one of its calls failed."""


def venv_python(venv: Path = VENV) -> Path:
    """The venv's interpreter."""
    return venv / "bin" / "python"


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('llm-sandbox')); import docker"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False, timeout=60)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _shown(venv: Path) -> str:
    try:
        return str(venv.relative_to(Path.cwd()))
    except ValueError:
        return str(venv)


def ensure_venv(venv: Path = VENV, *, install: bool = True) -> tuple[bool, str]:
    """Make sure the peer venv holds llm-sandbox ``PEER_VERSION``; return (ready, what happened).

    With ``install=False`` an absent or stale venv is reported, not installed.
    """
    python = venv_python(venv)
    where = _shown(venv)
    if _installed_version(python) == PEER_VERSION:
        return True, f"{PEER_LABEL} ready in {where}"
    if not install:
        return False, f"{PEER_LABEL} not installed in {where}"
    began = time.monotonic()
    print(f"   installing {PEER_LABEL} into {where} (first run only, seconds to a minute) ...", flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"llm-sandbox[docker]=={PEER_VERSION}"],
            timeout=600, capture_output=True, text=True, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"installing {PEER_LABEL} failed: {exc}"
    if done.returncode != 0:
        return False, f"installing {PEER_LABEL} failed: {done.stderr.strip().splitlines()[-1:]}"
    if _installed_version(python) != PEER_VERSION:
        return False, f"{PEER_LABEL} did not install in {where}"
    return True, f"{PEER_LABEL} installed in {where} in {time.monotonic() - began:.0f} s"


class PeerProcess:
    """The peer driver as a child process; ``call(op)`` returns the seconds the peer's call took.

    Args:
        label: ``key=value`` put on the peer's containers, so a sweep finds any it left.
        runtime: The OCI runtime of the peer's containers.
    """

    def __init__(self, label: str, runtime: str = "runsc", venv: Path = VENV) -> None:
        self._argv = [str(venv_python(venv)), str(DRIVER), IMAGE, runtime, label]
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> PeerProcess:
        self._process = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=DRIVER.parent
        )
        return self

    def call(self, op: str) -> float:
        """Run ``op`` (open, exec, step, close) in the peer; raise ``PeerError`` if it failed."""
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"op": op}) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise PeerError(f"the peer driver exited ({process.poll()}) during {op}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise PeerError(f"peer {op}: {answer.get('error')}")
        return float(answer["seconds"])

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            process.stdin.close()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
