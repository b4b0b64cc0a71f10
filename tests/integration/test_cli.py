"""The README's steps, as a user runs them: `workspaces serve` in one process, the CLI in others."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import remove_leftovers
from tests.serving import ROOT, WORKSPACES, Server, cli, serve_env

pytestmark = pytest.mark.docker


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return serve_env(tmp_path / "state")


@pytest.fixture
def server(env: dict[str, str], docker_client: Any) -> Iterator[Server]:
    served = Server(env)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()
        leaked = remove_leftovers(docker_client, served.instance())
        assert not leaked, "the server left containers behind"


def test_the_readme_walkthrough_create_exec_uname_rm(env: dict[str, str], server: Server) -> None:
    created = cli(env, "create")
    assert created.returncode == 0, created.stderr
    workspace_id = created.stdout.decode().strip()
    assert workspace_id.startswith("ws_")

    uname = cli(env, "exec", workspace_id, "--", "uname", "-a")
    assert uname.returncode == 0, uname.stderr
    assert b" 4.4.0 " in uname.stdout  # gVisor's kernel, not the host's
    assert os.uname().release.encode() not in uname.stdout

    failing = cli(env, "exec", workspace_id, "--shell", "echo oops >&2; exit 7")
    assert (failing.returncode, failing.stderr) == (7, b"oops\n")

    piped = cli(env, "exec", workspace_id, "--stdin", "--", "wc", "-c", stdin=b"12345")
    assert piped.stdout.strip() == b"5"

    listed = cli(env, "ls")
    assert workspace_id in listed.stdout.decode() and "ready" in listed.stdout.decode()
    got = json.loads(cli(env, "get", workspace_id, "--json").stdout)
    assert (got["id"], got["state"], got["runtime"]) == (workspace_id, "ready", "runsc")

    removed = cli(env, "rm", workspace_id)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli(env, "get", workspace_id, "--json").stdout)["state"] == "destroyed"

    assert server.stop() == 0
    assert "runtime stopped" in server.log


def test_providers_stats_extend_and_cp(env: dict[str, str], server: Server, tmp_path: Path) -> None:
    providers = cli(env, "providers")
    assert providers.returncode == 0
    header, row = providers.stdout.decode().splitlines()[:2]
    assert header.split()[:4] == ["NAME", "HEALTHY", "RUNTIME", "WORKSPACES"]
    assert row.split()[:3] == ["gvisor", "yes", "runsc"]
    assert json.loads(cli(env, "providers", "--json").stdout)[0]["runtime"] == "runsc"

    workspace_id = cli(env, "create", "--ttl", "60").stdout.decode().strip()
    try:
        extended = json.loads(cli(env, "extend", workspace_id, "7200", "--json").stdout)
        assert extended["expires_at"] - extended["created_at"] > 7000

        local = tmp_path / "script.py"
        local.write_text("print('from a file')\n")
        assert cli(env, "cp", str(local), f"{workspace_id}:tools/script.py", "--mode", "755").returncode == 0
        ran = cli(env, "exec", workspace_id, "--", "python3", "tools/script.py")
        assert ran.stdout == b"from a file\n"
        assert cli(env, "exec", workspace_id, "--shell", "stat -c %a tools/script.py").stdout == b"755\n"
        assert cli(env, "cp", "-", f"{workspace_id}:piped.bin", stdin=b"\x00\x01\x02").returncode == 0
        assert cli(env, "cp", f"{workspace_id}:piped.bin", "-").stdout == b"\x00\x01\x02"
        back = tmp_path / "back.py"
        assert cli(env, "cp", f"{workspace_id}:tools/script.py", str(back)).returncode == 0
        assert back.read_text() == local.read_text()
        neither = cli(env, "cp", str(local), str(back))
        assert neither.returncode == 2 and "one side must be WORKSPACE_ID:PATH" in neither.stderr.decode()

        stats = cli(env, "stats")
        assert stats.returncode == 0
        assert "workspaces  1 active of 10" in stats.stdout.decode()
        assert json.loads(cli(env, "stats", "--json").stdout)["workspaces"] == 1
    finally:
        cli(env, "rm", workspace_id)


def test_client_errors_are_one_line_with_the_code_and_exit_non_zero(env: dict[str, str], server: Server) -> None:
    missing = cli(env, "exec", "ws_000000000000", "--", "true")
    assert missing.returncode == 1
    assert missing.stderr.decode().strip() == "workspaces: not_found: workspace ws_000000000000 does not exist"
    bad = cli(env, "create", "--memory", "lots")
    assert bad.returncode == 1
    assert "bad_request: invalid args for create: memory='lots' is not a size" in bad.stderr.decode()


def test_a_bad_configuration_value_stops_serve_with_one_line(env: dict[str, str]) -> None:
    result = cli({**env, "WORKSPACE_DEFAULT_MEMORY": "lots"}, "serve")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "workspaces: WORKSPACE_DEFAULT_MEMORY='lots' is not valid: "
        "expected a size such as 4G, 512M or a number of bytes"
    )


def test_a_client_without_a_token_is_told_where_the_token_comes_from(env: dict[str, str], tmp_path: Path) -> None:
    result = cli({**env, "WORKSPACE_STATE_DIR": str(tmp_path / "elsewhere")}, "ls")
    assert result.returncode == 2
    assert "no token: set WORKSPACE_AUTH_TOKEN or start the runtime once" in result.stderr.decode()


def test_serve_logs_one_json_object_per_line_naming_the_workspace(env: dict[str, str], docker_client: Any) -> None:
    server = Server(env, argv=[*WORKSPACES, "--log-format", "json", "serve"])
    try:
        server.wait_ready()
        workspace_id = cli(env, "create").stdout.decode().strip()
        assert cli(env, "rm", workspace_id).returncode == 0
    finally:
        assert server.stop() == 0
        remove_leftovers(docker_client, server.instance())
    records = [json.loads(line) for line in server.lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(record) for record in records)
    about = [record for record in records if record.get("workspace_id") == workspace_id]
    assert any("is ready" in record["message"] for record in about)
    assert any("is destroyed" in record["message"] for record in about)


def test_exec_prints_output_as_it_comes_and_ctrl_c_kills_the_command(env: dict[str, str], server: Server) -> None:
    workspace_id = cli(env, "create").stdout.decode().strip()
    try:
        running = subprocess.Popen(
            [*WORKSPACES, "exec", workspace_id, "--shell", "echo first; exec sleep 300"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert running.stdout is not None
        # The first line arrives while the command still runs (it sleeps for 300 s).
        assert running.stdout.readline() == b"first\n"
        running.send_signal(signal.SIGINT)
        assert running.wait(60) == 130
        left = cli(env, "exec", workspace_id, "--shell", "ps -eo args= | grep -c '^sleep 300$' || true")
        assert left.stdout.strip() == b"0"
    finally:
        cli(env, "rm", workspace_id)
