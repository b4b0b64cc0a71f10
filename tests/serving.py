"""`workspaces serve` as a real process, for tests that drive it from outside."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import ROOT

WORKSPACES = [sys.executable, "-m", "runtime.cli"]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range.

    Outgoing connections (the tests' HTTP clients, for one) take their local ports from
    that range, so a port picked there (``bind(0)``) can be taken by one of them before
    the server binds it.
    """
    for _ in range(200):
        port = random.randrange(10000, _ephemeral_low())
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def serve_env(state_dir: Path, **variables: str) -> dict[str, str]:
    """The environment of a test server: enabled, its own state dir and ports, small workspaces."""
    return {
        **os.environ,
        "ENABLE_AGENT_WORKSPACES": "true",
        "WORKSPACE_STATE_DIR": str(state_dir),
        "WORKSPACE_ZMQ_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "WORKSPACE_ZMQ_EVENTS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "WORKSPACE_DEFAULT_MEMORY": "256M",
        "WORKSPACE_DEFAULT_CPU": "1",
        **variables,
    }


def cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*WORKSPACES, *args], check=False, env=env, cwd=ROOT, input=stdin, capture_output=True, timeout=180
    )


class Server:
    """`workspaces serve` (or ``argv``) in a subprocess; its log is collected by a reader thread."""

    def __init__(self, env: dict[str, str], argv: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            argv or [*WORKSPACES, "serve"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if " ready in " in line:
                self.ready.set()
        self.ready.set()  # the process ended: stop waiting either way

    def wait_ready(self, timeout_s: float = 120) -> None:
        assert self.ready.wait(timeout_s) and self.process.poll() is None, self.log

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def instance(self) -> str:
        match = re.search(r"\(instance ([0-9a-f]+)\)", self.log)
        return match.group(1) if match else ""

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(60)
        self.reader.join(10)
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        self.process.kill()
        self.process.wait(30)
        self.reader.join(10)
