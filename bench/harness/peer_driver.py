"""The peer's side: llm-sandbox driven one step at a time, run by the peer virtualenv's Python.

This file imports only the standard library and ``llm_sandbox`` (it never runs in the
project's environment). It reads one JSON command per line on standard input and
answers one JSON line: ``{"ok": true, "seconds": ...}`` timed around the peer's own
call alone, or ``{"ok": false, "error": ...}``. Commands: ``open``, ``exec`` (``true``),
``step`` (write a Python file, run it, read what it wrote: the agent step), ``close``,
``quit``. At most one session is open; it is closed on ``quit`` or end of input.

Each session gets a Docker volume at its workdir ``/sandbox``, as our workspaces and the
raw baseline have one at ``/workspace``: under gVisor the container's root filesystem is
an overlay inside the sandbox, so a file the sandbox writes there never reaches Docker's
archive API (``copy_from_runtime``) - a volume does. Docker creates the volume as the
container is created (inside the timed ``open``); it is removed after ``close``, untimed.

    python peer_driver.py IMAGE RUNTIME LABEL_KEY=LABEL_VALUE
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
from docker.types import Mount
from llm_sandbox import SandboxBackend, SandboxSession  # type: ignore[import-not-found]  # the peer venv's

__all__ = ["main"]

SCRIPT = "open('/sandbox/result.txt', 'w').write(str(sum(range(%d))))\n"


class Driver:
    """One llm-sandbox session at a time, configured as the issue asks (runsc, no environment setup)."""

    def __init__(self, image: str, runtime: str, label: str) -> None:
        key, _, value = label.partition("=")
        self.image = image
        self.labels = {key: value}
        self.runtime = runtime
        self.session: Any = None
        self.scratch = tempfile.TemporaryDirectory(prefix="peer-")
        self.prefix = f"aw-bench-peer-{value[-12:]}"
        self.volumes: list[str] = []
        self.n = 0
        self.sessions = 0

    def open(self) -> None:
        self.sessions += 1
        volume = f"{self.prefix}-{self.sessions}"
        self.volumes.append(volume)
        mount = Mount("/sandbox", volume, type="volume", labels=self.labels)
        session = SandboxSession(
            backend=SandboxBackend.DOCKER,
            lang="python",
            image=self.image,
            runtime_configs={"runtime": self.runtime, "labels": self.labels, "mounts": [mount]},
            skip_environment_setup=True,
            keep_template=True,
        )
        session.open()
        self.session = session

    def exec(self) -> None:
        result = self.session.execute_command("true")
        assert result.exit_code == 0, result

    def step(self) -> None:
        self.n += 1
        local = Path(self.scratch.name)
        (local / "task.py").write_text(SCRIPT % self.n)
        self.session.copy_to_runtime(str(local / "task.py"), "/sandbox/task.py")
        result = self.session.execute_command("python3 /sandbox/task.py")
        assert result.exit_code == 0, result
        self.session.copy_from_runtime("/sandbox/result.txt", str(local / "result.txt"))
        assert (local / "result.txt").read_text() == str(sum(range(self.n)))

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def tidy(self) -> None:
        """Remove the volumes of closed sessions (untimed: the peer's close leaves them)."""
        if self.session is not None or not self.volumes:
            return
        client = docker.from_env()
        try:
            for volume in self.volumes:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    client.api.remove_volume(volume, force=True)
            self.volumes = []
        finally:
            client.close()


def main() -> None:
    """Serve commands until ``quit`` or end of input."""
    driver = Driver(*sys.argv[1:4])
    try:
        for line in sys.stdin:
            op = json.loads(line)["op"]
            if op == "quit":
                break
            try:
                began = time.perf_counter()
                getattr(driver, op)()
                answer: dict[str, Any] = {"ok": True, "seconds": time.perf_counter() - began}
                driver.tidy()
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        driver.close()
        driver.tidy()
        driver.scratch.cleanup()


if __name__ == "__main__":
    main()
