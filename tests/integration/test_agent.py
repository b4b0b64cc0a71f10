"""The workspace agent and streamed processes, on real Docker (gVisor and runc)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable
from runtime.messages import ProcessExited, ProcessOutput, WorkspaceRecord
from runtime.wire import Client
from runtime.wire.streams import StreamEvent, Truncated, exec_topic_prefix, follow
from tests.helpers import poll_until

pytestmark = pytest.mark.docker

# Writes 50 MB in lines of 100 bytes, alternating stdout and stderr in bursts, each line
# numbered per stream so order and completeness can be checked on arrival.
PRODUCER = r"""
import os, sys
lines = int(sys.argv[1])
for n in range(lines):
    fd = 1 if (n // 7) % 2 == 0 else 2
    os.write(fd, b"%s%09d%s\n" % (b"o" if fd == 1 else b"e", n, b"x" * 89))
"""
LINE = 100
TOTAL = 50_000_000


@pytest.fixture(params=["runsc", "runc"])
def runtime(request: pytest.FixtureRequest, make_docker_runtime: Callable[..., Runtime]) -> Runtime:
    return make_docker_runtime(runtimes=(request.param,))


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    with runtime.client(timeout_s=120) as c:
        yield c


@pytest.fixture
def workspace(client: Client) -> Iterator[WorkspaceRecord]:
    record = client.create()
    poll_until(lambda: client.exec(record.id, "true").via == "agent", timeout_s=60)
    yield record
    client.destroy(record.id)


def collect(
    runtime: Runtime, client: Client, workspace_id: str, cmd: list[str] | str, **kwargs: Any
) -> list[StreamEvent]:
    with runtime.subscribe((exec_topic_prefix(workspace_id),)) as events:
        process = client.spawn(workspace_id, cmd, **kwargs)
        return list(follow(client, events, process, timeout_s=300))


def test_commands_and_files_go_through_the_agent(client: Client, workspace: WorkspaceRecord) -> None:
    result = client.exec(workspace.id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.via, result.exit_code, result.stdout, result.stderr) == ("agent", 3, b"out\n", b"err\n")
    client.write_file(workspace.id, "notes/a.txt", b"hello")
    assert client.read_file(workspace.id, "notes/a.txt") == b"hello"
    assert client.exec(workspace.id, "cat notes/a.txt", stdin=b"ignored").stdout == b"hello"


def test_fifty_megabytes_of_interleaved_output_arrive_complete_and_in_order(
    runtime: Runtime, client: Client, workspace: WorkspaceRecord
) -> None:
    lines = TOTAL // LINE
    stream = collect(runtime, client, workspace.id, ["python3", "-c", PRODUCER, str(lines)])
    exit_event = stream[-1]
    assert isinstance(exit_event, ProcessExited) and exit_event.exit_code == 0
    assert not [event for event in stream if isinstance(event, Truncated)]
    chunks = [event for event in stream if isinstance(event, ProcessOutput)]
    assert [event.seq for event in chunks] == list(range(1, len(chunks) + 1))
    out = b"".join(event.data for event in chunks if event.stream == "stdout")
    err = b"".join(event.data for event in chunks if event.stream == "stderr")
    assert len(out) + len(err) == TOTAL
    numbers = {"stdout": [], "stderr": []}  # type: dict[str, list[int]]
    for name, data in (("stdout", out), ("stderr", err)):
        for line in data.splitlines():
            assert line[:1] == (b"o" if name == "stdout" else b"e")
            numbers[name].append(int(line[1:10]))
    expected_out = [n for n in range(lines) if (n // 7) % 2 == 0]
    assert numbers["stdout"] == expected_out
    assert numbers["stderr"] == [n for n in range(lines) if (n // 7) % 2 == 1]


def test_a_background_process_outlives_its_request_and_can_be_listed_fed_and_killed(
    runtime: Runtime, client: Client, workspace: WorkspaceRecord
) -> None:
    with runtime.subscribe((exec_topic_prefix(workspace.id),)) as events:
        echo = client.spawn(workspace.id, ["cat"], stdin_open=True)
        sleeper = client.spawn(workspace.id, "sleep 300 & sleep 300; echo never")
        listed = {process.process_id: process for process in client.exec_list(workspace.id)}
        assert listed[echo.process_id].running and listed[sleeper.process_id].running
        assert listed[echo.process_id].cmd == ["cat"] and listed[echo.process_id].pid > 0
        client.exec_stdin(workspace.id, echo.process_id, b"first line\n")
        client.exec_stdin(workspace.id, echo.process_id, b"second line\n", close=True)
        echoed = list(follow(client, events, echo, timeout_s=60))
        assert b"".join(e.data for e in echoed if isinstance(e, ProcessOutput)) == b"first line\nsecond line\n"
        assert isinstance(echoed[-1], ProcessExited) and echoed[-1].exit_code == 0

        client.exec_kill(workspace.id, sleeper.process_id, "KILL")
        ended = list(follow(client, events, sleeper, timeout_s=60))
    assert isinstance(ended[-1], ProcessExited) and ended[-1].exit_code == 137
    assert not [e for e in ended if isinstance(e, ProcessOutput)]  # "never" was never printed
    # The whole group went: no sleep is left in the workspace.
    assert client.exec(workspace.id, "ps -eo args= | grep -c '^sleep 300$' || true").stdout.strip() == b"0"
    listed = {process.process_id: process for process in client.exec_list(workspace.id)}
    assert not listed[sleeper.process_id].running and listed[sleeper.process_id].exit_code == 137
    with pytest.raises(Conflict):
        client.exec_stdin(workspace.id, echo.process_id, b"too late")


def test_a_killed_agent_falls_back_to_docker_exec_and_comes_back(
    client: Client, workspace: WorkspaceRecord, docker_client: Any
) -> None:
    container = docker_client.containers.get(f"aw-{workspace.id}")
    container.exec_run(["pkill", "-KILL", "-f", "aw-agent"])
    # Until the new agent is up, commands run through docker exec; none is lost.
    fallback = client.exec(workspace.id, ["echo", "still here"])
    assert fallback.stdout == b"still here\n"
    assert fallback.via == "docker"
    poll_until(lambda: client.exec(workspace.id, "true").via == "agent", timeout_s=60)
    assert client.exec(workspace.id, ["echo", "back"]).stdout == b"back\n"


def test_a_streamed_command_times_out_like_any_other(
    runtime: Runtime, client: Client, workspace: WorkspaceRecord
) -> None:
    stream = collect(runtime, client, workspace.id, "echo started; sleep 60", timeout_s=1)
    exit_event = stream[-1]
    assert isinstance(exit_event, ProcessExited) and exit_event.timed_out and exit_event.exit_code == 137
    assert b"".join(e.data for e in stream if isinstance(e, ProcessOutput)) == b"started\n"


NO_PYTHON_IMAGE = "agent-workspaces/test-no-python:latest"


@pytest.fixture(scope="module")
def image_without_python(docker_client: Any) -> Iterator[str]:
    """The base image with python3 removed: no agent can run in it."""
    dockerfile = b"FROM agent-workspaces/base:bookworm\nRUN rm -f /usr/bin/python3*\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=NO_PYTHON_IMAGE, rm=True, forcerm=True)
    yield NO_PYTHON_IMAGE
    docker_client.images.remove(NO_PYTHON_IMAGE, force=True)


def test_an_image_without_python_is_served_by_docker_exec_with_the_same_file_rules(
    client: Client, image_without_python: str
) -> None:
    record = client.create(image=image_without_python)
    try:
        for _ in range(3):  # the agent fails to start in the background; nothing else changes
            result = client.exec(record.id, ["sh", "-c", "echo out; exit 4"])
            assert (result.via, result.exit_code, result.stdout) == ("docker", 4, b"out\n")
        client.write_file(record.id, "dir/note.txt", b"kept", mode=0o600)
        assert client.read_file(record.id, "dir/note.txt") == b"kept"
        assert client.exec(record.id, "stat -c %a dir/note.txt").stdout == b"600\n"
        client.exec(record.id, "ln -s /etc /workspace/etc-link")
        with pytest.raises(BadRequest, match="outside /workspace"):
            client.read_file(record.id, "etc-link/passwd")
        with pytest.raises(NotFound, match="no such file"):
            client.read_file(record.id, "nothing-here")
        with pytest.raises(BadRequest, match="is a directory"):
            client.write_file(record.id, "dir", b"x")
        with pytest.raises(ProviderUnavailable, match="agent is not running"):
            client.spawn(record.id, ["true"])
    finally:
        client.destroy(record.id)
