"""The Node.js client (clients/node) against a real runtime: its own tests, run by node.

`workspaces serve` runs as its own process; `node --test` on clients/node/test gets its
endpoints and token through WORKSPACES_ENDPOINT, WORKSPACES_EVENTS_ENDPOINT and
WORKSPACES_TOKEN. The Node tests destroy what they create; this test also checks that no
container was left behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, remove_leftovers
from tests.serving import Server, serve_env

pytestmark = pytest.mark.docker

PACKAGE = ROOT / "clients" / "node"
NODE = shutil.which("node")
NPM = shutil.which("npm")


def _installed() -> bool:
    """Whether node_modules is at least as new as package-lock.json (npm ci writes node_modules/.package-lock.json)."""
    marker = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


def _npm_ci() -> None:
    """Install the package's dependencies exactly as locked, once (idempotent, safe across processes)."""
    lock_path = Path(tempfile.gettempdir()) / "agent-workspaces-node-client-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return
        assert NPM is not None
        done = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PACKAGE, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"npm ci failed in {PACKAGE}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.skipif(NODE is None or NPM is None, reason="node and npm are needed on PATH for the Node.js client")
def test_the_node_client_passes_its_tests_against_a_live_runtime(tmp_path: Path, docker_client: Any) -> None:
    _npm_ci()
    token = secrets.token_urlsafe(24)
    env = serve_env(
        tmp_path / "state",
        WORKSPACE_AUTH_TOKEN=token,
        WORKSPACE_MCP_CONFIG=str(tmp_path / "mcp-none.toml"),  # no MCP servers of the checkout's own
    )
    server = Server(env)
    try:
        server.wait_ready()
        node_env = {
            **os.environ,
            "WORKSPACES_ENDPOINT": env["WORKSPACE_ZMQ_ENDPOINT"],
            "WORKSPACES_EVENTS_ENDPOINT": env["WORKSPACE_ZMQ_EVENTS_ENDPOINT"],
            "WORKSPACES_TOKEN": token,
        }
        assert NODE is not None
        # The files by name: node 18 and 20 take a directory, 22 and later take globs.
        tests = sorted(str(path) for path in (PACKAGE / "test").glob("*.test.js"))
        ran = subprocess.run(
            [NODE, "--test", "--test-reporter=tap", *tests],
            cwd=PACKAGE, env=node_env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        output = ran.stdout + ran.stderr
        summary = dict(re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", ran.stdout, re.MULTILINE))
        print("node --test:", " ".join(f"{key} {value}" for key, value in summary.items()))
        assert ran.returncode == 0, f"node --test failed:\n{output}\n--- runtime log ---\n{server.log}"
        assert summary.get("fail") == "0" and summary.get("skipped") == "0", output
        assert "# SKIP" not in ran.stdout, f"the live tests did not run:\n{output}"  # a skipped suite is not counted
        assert int(summary.get("pass", "0")) > 0, output
    finally:
        server.stop()
        leaked = remove_leftovers(docker_client, server.instance())
    assert not leaked, f"the Node.js client's tests left these behind: {leaked}"
