"""The E2B stand-in (``tests.e2b_standin``) against the real ``e2b`` SDK: it must answer as E2B does.

The control plane is driven through ``Sandbox.create``/``list``/``connect``... as the
adapter drives it; commands and files through ``attach``. Every test closes its plane and
checks that no stand-in container is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from e2b import (
    AuthenticationException,
    CommandExitException,
    FileNotFoundException,
    InvalidArgumentException,
    NotFoundException,
    RateLimitException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxQuery,
    SandboxState,
    ServiceBusyException,
    TimeoutException,
)
from e2b.api.client.models import Error
from e2b.sandbox_sync.commands.command import Commands
from e2b.sandbox_sync.commands.command_handle import CommandHandle
from e2b.sandbox_sync.filesystem.filesystem import Filesystem

from tests.e2b_standin import (
    ControlPlane,
    StandInCommandHandle,
    StandInCommands,
    StandInFilesystem,
    attach,
    leftover_standin_containers,
)
from tests.e2b_standin.checks import container_state, planes, signature_mismatches, start_elsewhere, unserved_methods
from tests.helpers import poll_until

MakePlane = Callable[..., ControlPlane]


@pytest.fixture
def make_plane(docker_client: Any) -> Iterator[MakePlane]:
    """Started control planes; each is closed after the test, which fails if a container is left."""
    with planes(docker_client) as make:
        yield make


@pytest.fixture
def plane(make_plane: MakePlane) -> ControlPlane:
    return make_plane()


@pytest.fixture
def sandbox(plane: ControlPlane) -> Sandbox:
    return attach(Sandbox.create(timeout=120, **plane.api_params()))


def pids(sandbox: Sandbox) -> list[int]:
    return [process.pid for process in sandbox.commands.list()]


FAKES = ((StandInCommands, Commands), (StandInFilesystem, Filesystem), (StandInCommandHandle, CommandHandle))


def test_the_fakes_have_the_sdks_signatures() -> None:
    for fake, sdk in FAKES:
        assert issubclass(fake, sdk)
        assert signature_mismatches(fake, sdk) == []
    # Every public method of the SDK is served but `write` (the SDK's own, over `write_files`) and `watch_dir`:
    # one a new SDK adds shows up here.
    assert unserved_methods(StandInCommands, Commands) == set()
    assert unserved_methods(StandInFilesystem, Filesystem) == {"write", "watch_dir"}


# ---------------------------------------------------------------------- the control plane


@pytest.mark.docker
def test_a_sandbox_is_created_from_a_known_template_with_its_metadata_and_envs(plane: ControlPlane) -> None:
    created = attach(Sandbox.create("base", metadata={"owner": "t 1"}, envs={"GREETING": "hi"}, **plane.api_params()))
    info = created.get_info()
    assert (info.name, info.metadata, info.state) == ("base", {"owner": "t 1"}, SandboxState.RUNNING)
    assert info.template_id != "base"  # E2B answers the template's id; its name is the alias
    assert (info.end_at - info.started_at).total_seconds() == 15  # E2B's default timeout
    assert created.commands.run("echo $GREETING").stdout == "hi\n"
    assert plane.requests[0].body == {"templateID": "base", "metadata": {"owner": "t 1"}, "envVars": {"GREETING": "hi"}}


@pytest.mark.docker
def test_an_unknown_template_is_a_404_the_sdk_raises_as_a_sandbox_exception(plane: ControlPlane) -> None:
    with pytest.raises(SandboxException) as raised:
        Sandbox.create("no-such-template", **plane.api_params())
    assert raised.value.status_code == 404


@pytest.mark.docker
def test_a_body_the_sdk_models_cannot_read_is_a_400(plane: ControlPlane) -> None:
    headers = {"X-API-KEY": plane.api_key}
    for body in ({"timeout": 5}, {"templateID": "base", "timeout": "soon"}):
        answer = httpx.post(f"{plane.url}/v2/sandboxes", json=body, headers=headers)
        assert answer.status_code == 400
        assert Error.from_dict(answer.json()).code == 400
    assert httpx.post(f"{plane.url}/v2/sandboxes", content=b"{", headers=headers).status_code == 400


@pytest.mark.docker
def test_a_listing_follows_the_paginator_across_pages(make_plane: MakePlane) -> None:
    plane = make_plane(max_page_size=2)
    tagged = {Sandbox.create(metadata={"team": "a&b=c d"}, **plane.api_params()).sandbox_id for _ in range(3)}
    Sandbox.create(metadata={"team": "other"}, **plane.api_params())
    Sandbox.create(**plane.api_params())

    def pages(query: SandboxQuery | None) -> list[list[str]]:
        paginator, found = Sandbox.list(query=query, **plane.api_params()), []
        while paginator.has_next:
            found.append([info.sandbox_id for info in paginator.next_items()])
        return found

    matching = pages(SandboxQuery(metadata={"team": "a&b=c d"}))
    assert [len(page) for page in matching] == [2, 1]
    assert {sandbox_id for page in matching for sandbox_id in page} == tagged
    assert [len(page) for page in pages(None)] == [2, 2, 1]
    listed = [request for request in plane.requests if request.method == "GET"]
    assert "nextToken" not in listed[0].body and "nextToken" in listed[1].body


@pytest.mark.docker
def test_the_list_filters_by_state(plane: ControlPlane) -> None:
    paused, running = Sandbox.create(**plane.api_params()), Sandbox.create(**plane.api_params())
    assert paused.pause() is True
    for state, expected in ((SandboxState.PAUSED, paused), (SandboxState.RUNNING, running)):
        found = Sandbox.list(query=SandboxQuery(state=[state]), **plane.api_params()).next_items()
        assert [(info.sandbox_id, info.state) for info in found] == [(expected.sandbox_id, state)]


@pytest.mark.docker
def test_set_timeout_moves_the_end_and_a_paused_sandbox_has_none_to_set(plane: ControlPlane) -> None:
    created = Sandbox.create(**plane.api_params())
    created.set_timeout(600)
    info = created.get_info()
    assert 595 <= (info.end_at - info.started_at).total_seconds() <= 605
    created.pause()
    with pytest.raises(SandboxNotFoundException):
        created.set_timeout(600)


@pytest.mark.docker
def test_connect_extends_a_running_sandbox_and_resumes_a_paused_one(plane: ControlPlane) -> None:
    created = attach(Sandbox.create(timeout=300, **plane.api_params()))
    created.files.write("kept.txt", "still here")
    end = created.get_info().end_at
    Sandbox.connect(created.sandbox_id, timeout=10, **plane.api_params())  # shorter: no change
    assert created.get_info().end_at == end
    created.pause()
    assert container_state(created.sandbox_id) == "paused"
    resumed = attach(Sandbox.connect(created.sandbox_id, timeout=60, **plane.api_params()))
    assert resumed.get_info().state == SandboxState.RUNNING
    assert resumed.files.read("kept.txt") == "still here"
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect("sbx-no-such-sandbox", **plane.api_params())


@pytest.mark.docker
def test_kill_removes_the_container_and_a_second_kill_finds_nothing(plane: ControlPlane) -> None:
    created = Sandbox.create(**plane.api_params())
    assert container_state(created.sandbox_id) == "running"
    assert created.kill() is True
    assert container_state(created.sandbox_id) is None
    assert created.kill() is False
    with pytest.raises(SandboxNotFoundException):
        created.get_info()


@pytest.mark.docker
def test_a_sandbox_whose_timeout_passes_is_killed(plane: ControlPlane) -> None:
    created = attach(Sandbox.create(timeout=1, **plane.api_params()))
    poll_until(lambda: plane.sandbox_state(created.sandbox_id) is None, timeout_s=10)
    poll_until(lambda: container_state(created.sandbox_id) is None, timeout_s=10)
    with pytest.raises(SandboxNotFoundException):
        created.get_info()
    with pytest.raises(SandboxNotRunningException):
        created.commands.run("true")
    assert created.is_running() is False


@pytest.mark.docker
def test_with_auto_pause_a_sandbox_whose_timeout_passes_is_paused(plane: ControlPlane) -> None:
    created = attach(Sandbox.create(timeout=1, lifecycle={"on_timeout": "pause"}, **plane.api_params()))
    created.files.write("state.txt", "kept")
    poll_until(lambda: container_state(created.sandbox_id) == "paused", timeout_s=10)
    info = created.get_info()
    assert (info.state, info.lifecycle) == (SandboxState.PAUSED, {"on_timeout": "pause", "auto_resume": False})
    with pytest.raises(SandboxNotRunningException):
        created.files.read("state.txt")
    resumed = attach(Sandbox.connect(created.sandbox_id, timeout=60, **plane.api_params()))
    assert resumed.files.read("state.txt") == "kept"


@pytest.mark.docker
def test_a_wrong_api_key_is_refused_with_an_authentication_exception(plane: ControlPlane) -> None:
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key="e2b_wrong", api_url=plane.url, domain=plane.domain)
    assert plane.requests[-1].path == "/v2/sandboxes"


@pytest.mark.docker
def test_an_injected_429_is_retried_by_the_sdk_and_a_persistent_one_raises_rate_limit(plane: ControlPlane) -> None:
    created = Sandbox.create(**plane.api_params())
    plane.fail_next(429, path_prefix="/sandboxes/")
    assert created.get_info().sandbox_id == created.sandbox_id
    assert [request.path for request in plane.requests[-2:]] == [f"/sandboxes/{created.sandbox_id}"] * 2
    plane.fail_next(429, times=4)  # the SDK's 3 retries, and one more
    with pytest.raises(RateLimitException):
        created.get_info()
    plane.fail_next(429, times=4, path_prefix="/v2/sandboxes", method="POST")
    assert Sandbox.list(**plane.api_params()).next_items()  # a listing is not a create
    with pytest.raises(RateLimitException):
        Sandbox.create(**plane.api_params())
    plane.fail_next(500, headers={"Should-Retry": "false"})
    with pytest.raises(SandboxException) as raised:
        created.get_info()
    assert raised.value.status_code == 500


@pytest.mark.docker
def test_an_unavailable_api_answers_503_and_an_unreachable_one_refuses_connections(plane: ControlPlane) -> None:
    created = Sandbox.create(**plane.api_params())
    plane.set_available(False)
    with pytest.raises(ServiceBusyException):
        created.get_info()
    plane.set_available(True)
    plane.set_reachable(False)
    with pytest.raises(httpx.ConnectError):  # the SDK lets the transport's error through
        created.get_info()
    plane.set_reachable(True)
    assert created.get_info().state == SandboxState.RUNNING


@pytest.mark.docker
def test_the_same_idempotency_key_gives_the_same_sandbox(plane: ControlPlane) -> None:
    first = Sandbox.create(idempotency_key="create-1", **plane.api_params())
    again = Sandbox.create(idempotency_key="create-1", **plane.api_params())
    assert again.sandbox_id == first.sandbox_id
    assert len(leftover_standin_containers(plane.plane_id)) == 1
    with pytest.raises(SandboxException):
        Sandbox.create(idempotency_key="create-1", metadata={"other": "body"}, **plane.api_params())


# ---------------------------------------------------------------------- commands through attach


@pytest.mark.docker
def test_a_command_runs_as_the_default_user_in_its_home_with_the_envs_given(sandbox: Sandbox) -> None:
    result = sandbox.commands.run("echo $(whoami) $(pwd) $USER $EXTRA; echo oops >&2", envs={"EXTRA": "x"})
    assert (result.stdout, result.stderr) == ("user /home/user user x\n", "oops\n")
    assert (result.exit_code, result.error) == (0, None)
    assert sandbox.commands.run("whoami; pwd", user="root", cwd="/tmp").stdout == "root\n/tmp\n"
    with pytest.raises(InvalidArgumentException):
        sandbox.commands.run("true", cwd="/no/such/dir")
    with pytest.raises(AuthenticationException):  # envd's answer for a user the sandbox does not have
        sandbox.commands.run("true", user="ghost")


@pytest.mark.docker
def test_a_failing_command_raises_command_exit_exception_with_its_output(sandbox: Sandbox) -> None:
    with pytest.raises(CommandExitException) as raised:
        sandbox.commands.run("echo partial; echo bad >&2; exit 3")
    assert (raised.value.exit_code, raised.value.error) == (3, "exit status 3")
    assert (raised.value.stdout, raised.value.stderr) == ("partial\n", "bad\n")


@pytest.mark.docker
def test_output_reaches_the_callbacks_as_it_is_written(sandbox: Sandbox) -> None:
    seen: list[str] = []

    def on_stdout(chunk: str) -> None:
        seen.append(chunk)
        if chunk == "first\n":  # the command goes on only once the test has seen this
            sandbox.files.write("/tmp/go", "")

    result = sandbox.commands.run(
        "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second", on_stdout=on_stdout, timeout=20
    )
    assert seen == ["first\n", "second\n"]
    assert result.stdout == "first\nsecond\n"


@pytest.mark.docker
def test_a_background_command_reads_stdin_until_it_is_closed(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("read line; echo got:$line; cat", background=True, stdin=True)
    handle.send_stdin("one\n")
    sandbox.commands.send_stdin(handle.pid, b"two\n")
    handle.close_stdin()
    assert handle.wait().stdout == "got:one\ntwo\n"
    assert sandbox.commands.run("cat").stdout == ""  # without stdin=True, stdin is empty
    quiet = sandbox.commands.run("sleep 30", background=True)
    with pytest.raises(SandboxException):
        quiet.send_stdin("nobody reads this")
    quiet.kill()


@pytest.mark.docker
def test_a_command_can_be_left_and_connected_to_again(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("read x; echo got $x", background=True, stdin=True)
    handle.disconnect()
    again = sandbox.commands.connect(handle.pid)
    sandbox.commands.send_stdin(handle.pid, "1\n")
    assert again.wait().stdout == "got 1\n"
    with pytest.raises(NotFoundException):  # it has ended: envd no longer knows it
        sandbox.commands.connect(handle.pid)


@pytest.mark.docker
def test_a_killed_command_ends_with_minus_one_and_leaves_the_list(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 30", background=True)
    [listed] = [process for process in sandbox.commands.list() if process.pid == handle.pid]
    assert (listed.cmd, listed.args) == ("/bin/bash", ["-l", "-c", "sleep 30"])
    assert handle.kill() is True
    with pytest.raises(CommandExitException) as raised:
        handle.wait()
    assert (raised.value.exit_code, raised.value.error) == (-1, "signal: killed")
    poll_until(lambda: handle.pid not in pids(sandbox), timeout_s=10)
    assert sandbox.commands.kill(handle.pid) is False


@pytest.mark.docker
def test_a_command_past_its_timeout_raises_timeout_and_is_killed(sandbox: Sandbox) -> None:
    with pytest.raises(TimeoutException) as raised:
        sandbox.commands.run("sleep 30", timeout=1)
    assert type(raised.value) is TimeoutException  # the deadline's, not a sandbox that is gone
    poll_until(lambda: pids(sandbox) == [], timeout_s=10)


@pytest.mark.docker
def test_a_command_started_in_another_process_is_listed_and_killed_here(plane: ControlPlane, sandbox: Sandbox) -> None:
    pid = start_elsewhere(plane, sandbox.sandbox_id, "sleep 30")
    assert pid in pids(sandbox)
    assert sandbox.commands.kill(pid) is True
    poll_until(lambda: pid not in pids(sandbox), timeout_s=10)


# ---------------------------------------------------------------------- files through attach


@pytest.mark.docker
def test_files_round_trip_bytes_and_create_parent_directories_owned_by_the_user(sandbox: Sandbox) -> None:
    payload = bytes(range(256)) * 64
    written = sandbox.files.write("deep/er/blob.bin", payload)
    assert (written.name, written.path) == ("blob.bin", "/home/user/deep/er/blob.bin")
    assert bytes(sandbox.files.read("/home/user/deep/er/blob.bin", format="bytes")) == payload
    assert sandbox.files.read("~/deep/er/blob.bin", format="bytes") == bytearray(payload)
    sandbox.files.write("note.txt", "héllo")
    assert sandbox.files.read("note.txt") == "héllo"
    info = sandbox.files.get_info("deep")
    assert (info.owner, info.group, info.permissions) == ("user", "user", "drwxr-xr-x")
    assert [entry.name for entry in sandbox.files.list("deep", depth=2)] == ["er", "blob.bin"]
    assert sandbox.files.make_dir("deep") is False
    sandbox.files.remove("deep")
    assert sandbox.files.exists("deep") is False


@pytest.mark.docker
def test_a_missing_file_raises_file_not_found(sandbox: Sandbox) -> None:
    with pytest.raises(FileNotFoundException):
        sandbox.files.read("missing.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.get_info("missing.txt")
    with pytest.raises(FileNotFoundException):
        sandbox.files.list("missing-dir")
    assert sandbox.files.exists("missing.txt") is False
    sandbox.files.remove("missing.txt")  # envd's RemoveAll: nothing to remove is fine


@pytest.mark.docker
def test_a_gone_sandbox_raises_sandbox_not_running_for_commands_and_files(sandbox: Sandbox) -> None:
    assert sandbox.is_running() is True
    running = sandbox.commands.run("sleep 30", background=True)
    sandbox.kill()
    with pytest.raises(SandboxNotRunningException):
        running.wait()
    with pytest.raises(SandboxNotRunningException):
        sandbox.commands.run("true")
    with pytest.raises(SandboxNotRunningException):
        sandbox.files.write("a.txt", "x")
    with pytest.raises(SandboxNotRunningException):
        sandbox.files.exists("a.txt")
    assert sandbox.is_running() is False
