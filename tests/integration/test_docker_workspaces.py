"""The walking skeleton on the real Docker daemon with gVisor (runsc)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, Conflict
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED
from runtime.providers.docker import MANAGED_NETWORK
from runtime.wire import Client

pytestmark = pytest.mark.docker


@pytest.fixture
def tcp_client(docker_runtime: Runtime) -> Iterator[Client]:
    with Client(docker_runtime.endpoint, docker_runtime.token, timeout_s=120) as client:
        yield client


def test_create_exec_destroy_over_zeromq_tcp_runs_under_gvisor(
    docker_runtime: Runtime, tcp_client: Client, docker_client: Any
) -> None:
    record = tcp_client.create(labels={"suite": "skeleton"})
    try:
        assert record.state == "ready"
        assert record.runtime == "runsc"
        container = docker_client.containers.get(f"aw-{record.id}")
        assert container.attrs["HostConfig"]["Runtime"] == "runsc"
        assert container.labels[LABEL_MANAGED] == "true"
        assert container.labels[LABEL_ID] == record.id
        assert container.labels[LABEL_INSTANCE] == docker_runtime.instance_id
        hello = tcp_client.exec(record.id, ["echo", "hello"])
        assert (hello.exit_code, hello.stdout, hello.stderr, hello.timed_out) == (0, b"hello\n", b"", False)
        # gVisor's Sentry reports its own kernel version, not the host's.
        kernel = tcp_client.exec(record.id, ["uname", "-r"]).stdout.decode().strip()
        assert kernel != os.uname().release
        assert kernel == "4.4.0"
    finally:
        tcp_client.destroy(record.id)
    assert tcp_client.get(record.id).state == "destroyed"
    assert not docker_client.containers.list(all=True, filters={"name": f"aw-{record.id}"})


def test_the_embedded_runtime_serves_the_same_ops_over_inproc(docker_runtime: Runtime) -> None:
    with docker_runtime.client(timeout_s=120) as client:
        record = client.create()
        try:
            result = client.exec(record.id, "echo out; echo err >&2; exit 3")
            assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
            assert [r.id for r in client.list()] == [record.id]
        finally:
            client.destroy(record.id)


def test_exec_honours_cwd_env_and_stdin(tcp_client: Client) -> None:
    record = tcp_client.create(env={"FROM_CREATE": "c"})
    try:
        result = tcp_client.exec(
            record.id, "pwd; echo $FROM_CREATE $FROM_EXEC; cat", cwd="/tmp", env={"FROM_EXEC": "e"}, stdin=b"piped\n"
        )
        assert result.stdout == b"/tmp\nc e\npiped\n"
        assert tcp_client.exec(record.id, ["pwd"]).stdout == b"/workspace\n"
        binary = bytes(range(256)) * 64
        echoed = tcp_client.exec(record.id, ["cat"], stdin=binary)
        assert echoed.stdout == binary
    finally:
        tcp_client.destroy(record.id)


def test_the_container_carries_the_requested_limits(tcp_client: Client, docker_client: Any) -> None:
    record = tcp_client.create(cpu=0.5, memory="128M")
    try:
        host_config = docker_client.containers.get(f"aw-{record.id}").attrs["HostConfig"]
        assert host_config["NanoCpus"] == 500_000_000
        assert host_config["Memory"] == 128 << 20
        assert host_config["MemorySwap"] == 128 << 20
        assert host_config["PidsLimit"] > 0
        assert docker_client.containers.get(f"aw-{record.id}").attrs["NetworkSettings"]["Networks"].keys() == {
            MANAGED_NETWORK
        }
    finally:
        tcp_client.destroy(record.id)


def test_a_missing_image_is_a_clear_bad_request_and_leaves_nothing(tcp_client: Client) -> None:
    with pytest.raises(BadRequest, match="image not found locally"):
        tcp_client.create(image="agent-workspaces/does-not-exist:1")
    [failed] = tcp_client.list(state="failed")
    tcp_client.destroy(failed.id)


def test_a_command_that_does_not_exist_reports_docker_s_error(tcp_client: Client) -> None:
    record = tcp_client.create()
    try:
        result = tcp_client.exec(record.id, ["no-such-command"])
        assert result.exit_code in (126, 127)
    except Conflict:
        pytest.fail("a missing command is not a workspace conflict")
    finally:
        tcp_client.destroy(record.id)


def test_everyday_tools_work_inside_the_sandbox(tcp_client: Client) -> None:
    # runsc before 20240729 answers statx(AT_NO_AUTOMOUNT) with EINVAL: `ls` and `stat` fail.
    record = tcp_client.create()
    try:
        result = tcp_client.exec(record.id, "ls / >/dev/null && stat -c %n /etc/hostname && git --version")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(b"/etc/hostname\ngit version")
    finally:
        tcp_client.destroy(record.id)


def test_the_provider_reports_runsc_and_its_network_mode(tcp_client: Client) -> None:
    [status] = tcp_client.providers()
    assert (status.name, status.healthy, status.runtime) == ("gvisor", True, "runsc")
    assert "--network=host" in status.detail
