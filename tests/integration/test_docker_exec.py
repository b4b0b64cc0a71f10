"""``DockerExec`` on real Docker: commands by ``docker exec``, lost agents, cancel, the agent's start.

The containers here are plain ones under runc (fast), labelled for this module and
removed with their volumes whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import pytest

from runtime.agent import AgentGone, calls
from runtime.errors import Conflict, NotFound
from runtime.messages import Command, ExecResult
from runtime.providers.docker.commands import DockerExec
from runtime.providers.docker.connection import DockerConnection
from runtime.providers.docker.exec_stream import open_unix_exec
from tests.helpers import poll_until

pytestmark = pytest.mark.docker

IMAGE = "agent-workspaces/base:bookworm"
LABEL = {"agent-workspaces.test": "docker-exec"}


def start_container(client: Any, name: str) -> str:
    api = client.api
    api.create_container(
        IMAGE,
        entrypoint=["sleep", "infinity"],
        name=name,
        labels=LABEL,
        host_config=api.create_host_config(runtime="runc", init=True),
    )
    api.start(name)
    return name


def remove_container(client: Any, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(name, force=True, v=True)


@pytest.fixture(scope="module")
def container(docker_client: Any) -> Iterator[str]:
    """One running container for the whole module; afterwards none of this module's is left."""
    name = f"aw-test-exec-{uuid.uuid4().hex[:10]}"
    try:
        yield start_container(docker_client, name)
    finally:
        remove_container(docker_client, name)
    left = docker_client.api.containers(all=True, filters={"label": "agent-workspaces.test=docker-exec"})
    assert left == [], f"containers left behind: {[c['Names'] for c in left]}"


@pytest.fixture
def make_container(docker_client: Any) -> Iterator[Callable[[], str]]:
    """Short-lived containers, for tests that stop or remove theirs."""
    made: list[str] = []

    def make() -> str:
        made.append(start_container(docker_client, f"aw-test-exec-{uuid.uuid4().hex[:10]}"))
        return made[-1]

    yield make
    for name in made:
        remove_container(docker_client, name)


class ThroughTheSdk(DockerConnection):
    """A connection that attaches execs through docker-py's hijacked socket (as for tcp:// hosts)."""

    @property
    def socket_path(self) -> str | None:
        return None


@pytest.fixture(scope="module")
def docker_exec() -> DockerExec:
    return DockerExec(DockerConnection())


@pytest.fixture(params=["unix-socket", "sdk-socket"])
def either_exec(request: pytest.FixtureRequest, docker_exec: DockerExec) -> DockerExec:
    return docker_exec if request.param == "unix-socket" else DockerExec(ThroughTheSdk())


def processes(docker_exec: DockerExec, handle: str) -> list[str]:
    """Every process's command line in the container (zombies show as ``[name] <defunct>``)."""
    return docker_exec.run(handle, Command(argv=["ps", "-eo", "args="])).stdout.decode().splitlines()


# ---------------------------------------------------------------------- run


def test_run_returns_output_and_exit_code_via_docker(either_exec: DockerExec, container: str) -> None:
    result = either_exec.run(container, Command(argv=["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert (result.timed_out, result.via) == (False, "docker")
    assert result.duration_ms > 0
    assert either_exec.run(container, Command(argv=["true"])).exit_code == 0


def test_run_feeds_stdin_and_honours_env_and_cwd(either_exec: DockerExec, container: str) -> None:
    command = Command(
        argv=["sh", "-c", 'pwd; echo "$GREETING $OTHER"; tr a-z A-Z'],
        stdin=b"from stdin\n",
        env={"GREETING": "hello", "OTHER": "world"},
        cwd="/usr/share",
    )
    result = either_exec.run(container, command)
    assert result.stdout == b"/usr/share\nhello world\nFROM STDIN\n"
    assert result.exit_code == 0


def test_without_stdin_a_command_reads_end_of_file(docker_exec: DockerExec, container: str) -> None:
    result = docker_exec.run(container, Command(argv=["sh", "-c", "cat; echo cat-ended"]))
    assert result.stdout == b"cat-ended\n"


def test_large_stdin_and_output_stream_through_docker_exec(docker_exec: DockerExec, container: str) -> None:
    data = os.urandom(8 << 20)
    digest = docker_exec.run(container, Command(argv=["sha256sum"], stdin=data))
    assert digest.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    echoed = docker_exec.run(container, Command(argv=["cat"], stdin=data, output_limit=len(data)))
    assert echoed.stdout == data


def test_output_beyond_the_limit_is_cut_with_the_marker(docker_exec: DockerExec, container: str) -> None:
    command = Command(
        argv=["sh", "-c", "head -c 5000 /dev/zero; head -c 300 /dev/zero >&2; echo done >&2"], output_limit=1000
    )
    result = docker_exec.run(container, command)
    assert result.stdout == bytes(1000) + b"\n[output truncated: 4000 bytes omitted]\n"
    assert result.stderr == bytes(300) + b"done\n"
    assert result.exit_code == 0


def test_a_timeout_kills_the_whole_process_group(docker_exec: DockerExec, container: str) -> None:
    command = Command(argv=["sh", "-c", "echo before; sleep 300 & sleep 300; echo after"], timeout_s=1)
    result = docker_exec.run(container, command)
    assert result.timed_out is True
    assert result.exit_code == 137
    assert result.stdout == b"before\n"
    assert "sleep 300" not in processes(docker_exec, container)


def test_a_command_killed_early_by_its_own_hand_has_not_timed_out(docker_exec: DockerExec, container: str) -> None:
    result = docker_exec.run(container, Command(argv=["sh", "-c", "kill -9 $$"], timeout_s=30))
    assert (result.exit_code, result.timed_out) == (137, False)


def test_run_in_a_missing_container_is_not_found(docker_exec: DockerExec) -> None:
    with pytest.raises(NotFound, match=r"exec in aw-test-exec-missing: .*No such container"):
        docker_exec.run("aw-test-exec-missing", Command(argv=["true"]))


def test_run_in_a_stopped_container_is_a_conflict(
    docker_exec: DockerExec, make_container: Callable[[], str], docker_client: Any
) -> None:
    handle = make_container()
    docker_client.api.stop(handle, timeout=0)
    with pytest.raises(Conflict, match=f"exec in {handle}: .*is not running"):
        docker_exec.run(handle, Command(argv=["true"]))


def test_starting_an_exec_that_does_not_exist_is_not_found(docker_client: Any) -> None:
    connection = DockerConnection()
    assert connection.socket_path is not None
    with pytest.raises(NotFound, match="exec target not found: No such exec instance: deadbeef"):
        open_unix_exec(connection.socket_path, docker_client.api.api_version, "deadbeef", timeout=30)


def test_a_real_404_from_docker_is_not_found() -> None:
    connection = DockerConnection()
    expected = "inspecting aw-test-exec-absent: No such container: aw-test-exec-absent"
    with pytest.raises(NotFound, match=expected), connection.errors("inspecting aw-test-exec-absent"):
        connection.client().api.inspect_container("aw-test-exec-absent")


# ---------------------------------------------------------------------- lost, cancel


def test_a_lost_agent_in_a_running_container_is_a_conflict_naming_the_agent(
    docker_exec: DockerExec, container: str
) -> None:
    error = docker_exec.lost(container, AgentGone("the agent of it stopped", sent=True))
    assert isinstance(error, Conflict)
    assert error.message == "the workspace's agent stopped while the command ran (the agent of it stopped)"


def test_a_lost_agent_in_a_stopped_container_ended_with_its_workspace(
    docker_exec: DockerExec, make_container: Callable[[], str], docker_client: Any
) -> None:
    handle = make_container()
    docker_client.api.kill(handle)  # SIGKILL: exit 137
    error = docker_exec.lost(handle, AgentGone("gone", sent=True))
    assert isinstance(error, Conflict)
    assert error.message == "the command ended with its workspace: the workspace's container exited with code 137"


def test_a_lost_agent_in_a_removed_container_was_removed_while_the_command_ran(
    docker_exec: DockerExec, make_container: Callable[[], str], docker_client: Any
) -> None:
    handle = make_container()
    docker_client.api.remove_container(handle, force=True, v=True)
    error = docker_exec.lost(handle, AgentGone("gone", sent=True))
    assert isinstance(error, Conflict)
    assert error.message == "the workspace's container was removed while the command ran"


def test_cancel_ends_a_running_command_s_wait_from_another_thread(docker_exec: DockerExec, container: str) -> None:
    outcome: list[ExecResult | BaseException] = []

    def long_run() -> None:
        try:
            outcome.append(docker_exec.run(container, Command(argv=["sleep", "299"])))
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=long_run)
    runner.start()
    try:
        poll_until(lambda: "sleep 299" in processes(docker_exec, container), timeout_s=60)
        docker_exec.cancel(container)
        runner.join(60)
        assert not runner.is_alive(), "cancel did not end the run"
    finally:
        docker_exec.run(container, Command(argv=["pkill", "-KILL", "-f", "^sleep 299$"]))
        runner.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], ExecResult)
    assert outcome[0].exit_code == -1  # its wait ended before the command did
    assert outcome[0].timed_out is False
    docker_exec.cancel(container)  # nothing attached: nothing happens
    assert docker_exec.run(container, Command(argv=["echo", "still fine"])).stdout == b"still fine\n"


# ---------------------------------------------------------------------- the agent


def agent_lines(docker_exec: DockerExec, handle: str) -> list[str]:
    return [line for line in processes(docker_exec, handle) if "aw-agent" in line and "<defunct>" not in line]


def test_open_agent_starts_an_agent_that_runs_commands(docker_exec: DockerExec, container: str) -> None:
    channel = docker_exec.open_agent(container)
    try:
        channel.wait_ready(60)
        assert channel.agent_pid > 0
        result = calls.run(channel, Command(argv=["sh", "-c", "echo $0 via agent; echo e >&2"], stdin=b"ignored"))
        assert (result.stdout, result.stderr, result.exit_code, result.via) == (b"sh via agent\n", b"e\n", 0, "agent")
        assert len(agent_lines(docker_exec, container)) == 1
    finally:
        channel.close()
    assert not channel.alive
    poll_until(lambda: agent_lines(docker_exec, container) == [], timeout_s=30)  # closing ends the agent


def test_a_second_agent_ends_the_first(docker_exec: DockerExec, container: str) -> None:
    first = docker_exec.open_agent(container)
    second = None
    try:
        first.wait_ready(60)
        second = docker_exec.open_agent(container)
        second.wait_ready(60)
        poll_until(lambda: not first.alive, timeout_s=30)
        assert calls.run(second, Command(argv=["echo", "second"])).stdout == b"second\n"
        poll_until(lambda: len(agent_lines(docker_exec, container)) == 1, timeout_s=30)
    finally:
        first.close()
        if second is not None:
            second.close()
    poll_until(lambda: agent_lines(docker_exec, container) == [], timeout_s=30)
