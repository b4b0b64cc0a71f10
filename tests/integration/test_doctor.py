"""`workspaces doctor` as an operator runs it, against the real Docker daemon and a real runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import remove_leftovers
from tests.serving import Server, cli, serve_env

pytestmark = pytest.mark.docker


def lines(output: bytes) -> dict[str, str]:
    """Check name -> its status line and fix, from doctor's table."""
    found: dict[str, str] = {}
    name = ""
    for line in output.decode().splitlines():
        if line.startswith(("PASS", "WARN", "FAIL")):
            name = line[6:24].strip()
            found[name] = line
        elif name:
            found[name] += "\n" + line
    return found


def test_doctor_passes_every_check_with_docker_gvisor_and_a_runtime_up(tmp_path: Path, docker_client: Any) -> None:
    env = serve_env(tmp_path / "state")
    server = Server(env)
    try:
        server.wait_ready()
        result = cli(env, "doctor")
        checks = lines(result.stdout)
        assert result.returncode == 0, result.stdout.decode()
        for name in ("configuration", "master switch", "state directory", "docker daemon", "base image", "runsc"):
            assert checks[name].startswith("PASS"), checks[name]
        assert "under gVisor (kernel 4.4.0)" in checks["runsc"]
        assert checks["provider gvisor"].startswith("PASS")
        assert checks["capacity"].startswith("PASS") and "0 of 10 slots taken" in checks["capacity"]
        as_json = json.loads(cli(env, "doctor", "--json").stdout)
        assert {check["status"] for check in as_json} <= {"PASS", "WARN"}
    finally:
        assert server.stop() == 0
        remove_leftovers(docker_client, server.instance())
    assert not docker_client.containers.list(all=True, filters={"label": "agent-workspaces.doctor"})


def test_doctor_fails_with_the_fix_when_the_docker_daemon_does_not_answer(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "state", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    result = cli(env, "doctor")
    checks = lines(result.stdout)
    assert result.returncode == 1
    assert checks["docker daemon"].startswith("FAIL")
    assert "fix: start Docker (`scripts/dockerd.sh start`" in checks["docker daemon"]
    assert checks["runtime"].startswith("WARN") and "does not answer" in checks["runtime"]
