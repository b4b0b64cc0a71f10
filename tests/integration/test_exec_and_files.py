"""Exec semantics and file transfer on real Docker with gVisor."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.messages import OUTPUT_LIMIT, WorkspaceRecord
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE
from runtime.wire import Client
from tests.helpers import poll_until

pytestmark = pytest.mark.docker


@pytest.fixture
def client(docker_runtime: Runtime) -> Iterator[Client]:
    with docker_runtime.client(timeout_s=120) as c:
        yield c


@pytest.fixture
def workspace(client: Client) -> Iterator[WorkspaceRecord]:
    record = client.create()
    # Through the agent, as commands and files run once it is up (test_agent.py covers the
    # docker exec path, in an image without python3).
    poll_until(lambda: client.exec(record.id, "true").via == "agent", timeout_s=60)
    yield record
    client.destroy(record.id)


# ---------------------------------------------------------------------- exec


def test_a_timeout_kills_the_whole_process_tree_and_returns_the_output_so_far(
    client: Client, workspace: WorkspaceRecord
) -> None:
    sleeper = "python3 -c 'import time; time.sleep(300)' tree-member"
    tree = f"echo before; {sleeper} & {sleeper}; echo after"
    result = client.exec(workspace.id, tree, timeout_s=2)
    assert result.timed_out
    assert result.stdout == b"before\n"
    assert result.exit_code == 137
    survivors = client.exec(workspace.id, "ps -eo args= | grep -c '[t]ree-member' || true")
    assert survivors.stdout.strip() == b"0"


def test_exit_codes_are_preserved(client: Client, workspace: WorkspaceRecord) -> None:
    assert client.exec(workspace.id, "exit 42").exit_code == 42
    assert client.exec(workspace.id, ["false"]).exit_code == 1
    assert client.exec(workspace.id, "kill -9 $$").exit_code == 137
    ok = client.exec(workspace.id, ["true"], timeout_s=30)
    assert (ok.exit_code, ok.timed_out) == (0, False)


def test_output_beyond_the_cap_is_cut_with_a_clear_marker(client: Client, workspace: WorkspaceRecord) -> None:
    result = client.exec(workspace.id, "head -c 20000000 /dev/zero; echo done >&2")
    omitted = 20_000_000 - OUTPUT_LIMIT
    marker = f"\n[output truncated: {omitted} bytes omitted]\n".encode()
    assert result.stdout == bytes(OUTPUT_LIMIT) + marker
    assert result.stderr == b"done\n"
    assert result.exit_code == 0


def test_large_stdin_streams_through(client: Client, workspace: WorkspaceRecord) -> None:
    data = os.urandom(30 << 20)
    result = client.exec(workspace.id, ["sha256sum"], stdin=data)
    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_a_long_exec_blocks_neither_get_nor_another_exec_and_destroy_ends_it(
    client: Client, docker_runtime: Runtime
) -> None:
    record = client.create()
    outcome: list[BaseException | object] = []

    def long_running() -> None:
        with docker_runtime.client(timeout_s=120) as other:
            try:
                outcome.append(other.exec(record.id, ["sleep", "60"]))
            except Conflict as exc:
                outcome.append(exc)

    thread = threading.Thread(target=long_running)
    thread.start()
    ready = "for i in $(seq 300); do ps -eo args= | grep -qx 'sleep 60' && exit 0; sleep 0.1; done; exit 1"
    assert client.exec(record.id, ready).exit_code == 0  # the long one runs; this one is not held up
    assert client.get(record.id).state == "ready"
    client.destroy(record.id)
    thread.join(30)
    assert not thread.is_alive(), "destroy did not end the running exec"
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict)
    assert "destroyed while the command ran" in str(outcome[0])


# ---------------------------------------------------------------------- files


def test_files_round_trip_text_binary_and_nested_paths(client: Client, workspace: WorkspaceRecord) -> None:
    client.write_file(workspace.id, "notes.txt", b"hello\n")
    assert client.read_file(workspace.id, "/workspace/notes.txt") == b"hello\n"
    binary = bytes(range(256)) * 100
    client.write_file(workspace.id, "deep/er/data.bin", binary, mode=0o600)
    assert client.read_file(workspace.id, "deep/er/data.bin") == binary
    assert client.exec(workspace.id, "stat -c %a deep/er/data.bin").stdout == b"600\n"
    assert client.exec(workspace.id, ["cat", "notes.txt"]).stdout == b"hello\n"  # the workspace sees it
    client.write_file(workspace.id, "notes.txt", b"")
    assert client.read_file(workspace.id, "notes.txt") == b""


def test_large_files_go_both_ways(client: Client, workspace: WorkspaceRecord) -> None:
    data = os.urandom(40 << 20)
    client.write_file(workspace.id, "big.bin", data)
    assert client.read_file(workspace.id, "big.bin") == data


def test_missing_files_and_directories_are_reported(client: Client, workspace: WorkspaceRecord) -> None:
    with pytest.raises(NotFound, match="no such file: /workspace/nothing-here"):
        client.read_file(workspace.id, "nothing-here")
    client.exec(workspace.id, ["mkdir", "-p", "adir"])
    with pytest.raises(BadRequest, match="is a directory"):
        client.read_file(workspace.id, "adir")
    with pytest.raises(BadRequest, match="is a directory"):
        client.write_file(workspace.id, "adir", b"x")


def test_symbolic_links_cannot_lead_file_operations_out_of_the_workspace(
    client: Client, workspace: WorkspaceRecord
) -> None:
    client.exec(workspace.id, "ln -s /etc /workspace/etc-link && ln -s ../etc/passwd /workspace/up")
    with pytest.raises(BadRequest, match="outside /workspace"):
        client.read_file(workspace.id, "etc-link/passwd")
    with pytest.raises(BadRequest, match="outside /workspace"):
        client.read_file(workspace.id, "up")
    with pytest.raises(BadRequest, match="outside /workspace"):
        client.write_file(workspace.id, "etc-link/evil", b"x")
    assert client.exec(workspace.id, ["test", "-e", "/etc/evil"]).exit_code == 1
    client.write_file(workspace.id, "real.txt", b"inside")
    client.exec(workspace.id, "ln -s /workspace/real.txt /workspace/alias")
    assert client.read_file(workspace.id, "alias") == b"inside"


def test_each_workspace_has_its_own_volume_removed_with_it(
    client: Client, docker_client: Any, docker_runtime: Runtime
) -> None:
    record = client.create()
    volume = docker_client.volumes.get(f"aw-{record.id}")
    assert volume.attrs["Labels"][LABEL_ID] == record.id
    assert volume.attrs["Labels"][LABEL_INSTANCE] == docker_runtime.instance_id
    mounts = docker_client.containers.get(f"aw-{record.id}").attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", f"aw-{record.id}", "/workspace")]
    client.destroy(record.id)
    assert not docker_client.volumes.list(filters={"name": f"aw-{record.id}"})
