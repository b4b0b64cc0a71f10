"""The Docker connection's error translation and the event watch, on fakes of docker-py."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import docker
import docker.errors
import pytest
import requests

from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, Timeout, WorkspaceError
from runtime.messages import ContainerEvent
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE
from runtime.providers.docker.connection import API_TIMEOUT_S, DockerConnection
from runtime.providers.docker.events import DockerEventWatch, exit_detail

# ---------------------------------------------------------------------- the connection


class FakeDockerClient:
    """Stands in for ``docker.DockerClient``: records how each was made."""

    made: list[FakeDockerClient] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        FakeDockerClient.made.append(self)


@pytest.fixture
def fake_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeDockerClient]]:
    FakeDockerClient.made = []
    monkeypatch.setattr(docker, "DockerClient", FakeDockerClient)
    yield FakeDockerClient.made
    FakeDockerClient.made = []


def response(status: int, reason: str = "") -> Any:
    """The parts of a ``requests.Response`` docker-py's ``APIError`` reads."""
    return SimpleNamespace(status_code=status, reason=reason, url="http+docker://localhost/v1.45/containers/x")


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    return docker.errors.APIError(f"{status} error", response=response(status), explanation=explanation)


def test_the_client_is_made_on_first_use_and_then_reused(
    fake_clients: list[FakeDockerClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    connection = DockerConnection()
    assert fake_clients == []
    first = connection.client()
    assert connection.client() is first
    assert fake_clients == [first]
    assert first.kwargs == {"version": "auto", "timeout": API_TIMEOUT_S}


def test_an_explicit_host_wins_over_the_environment_and_is_the_client_s_base_url(
    fake_clients: list[FakeDockerClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://from-env:2375")
    assert DockerConnection().docker_host == "tcp://from-env:2375"
    connection = DockerConnection("unix:///tmp/other.sock")
    connection.client()
    assert fake_clients[0].kwargs["base_url"] == "unix:///tmp/other.sock"


@pytest.mark.parametrize(
    ("docker_host", "socket_path", "where"),
    [
        (None, "/var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("", "/var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock"),
        ("tcp://10.0.0.7:2375", None, "tcp://10.0.0.7:2375"),
        ("ssh://me@builder", None, "ssh://me@builder"),
    ],
)
def test_the_socket_path_and_address_follow_docker_host(
    monkeypatch: pytest.MonkeyPatch, docker_host: str | None, socket_path: str | None, where: str
) -> None:
    if docker_host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    for connection in (DockerConnection(), DockerConnection(docker_host)):
        assert connection.socket_path == socket_path
        assert connection.where == where


@pytest.mark.parametrize(
    ("raised", "family", "retryable", "message"),
    [
        (
            docker.errors.ImageNotFound("404", response=response(404), explanation="No such image: nope:1"),
            BadRequest,
            False,
            "creating w1: image not found locally (No such image: nope:1); build or load it first",
        ),
        (
            docker.errors.NotFound("404", response=response(404), explanation="No such container: aw-w1"),
            NotFound,
            False,
            "creating w1: No such container: aw-w1",
        ),
        (api_error(409, "name already in use"), Conflict, False, "creating w1: name already in use"),
        (api_error(400, "invalid mount"), BadRequest, False, "creating w1: invalid mount"),
        (api_error(422, "unprocessable"), BadRequest, False, "creating w1: unprocessable"),
        (api_error(500, "oci failed"), ProviderUnavailable, True, "creating w1: Docker answered 500: oci failed"),
        (api_error(503, "busy"), ProviderUnavailable, True, "creating w1: Docker answered 503: busy"),
        (api_error(403, "forbidden"), ProviderUnavailable, False, "creating w1: Docker answered 403: forbidden"),
        (api_error(404, "gone"), ProviderUnavailable, False, "creating w1: Docker answered 404: gone"),
        (
            docker.errors.APIError("no response", explanation="odd"),
            ProviderUnavailable,
            False,
            "creating w1: Docker answered 0: odd",
        ),
    ],
)
def test_docker_api_errors_become_their_workspace_error_families(
    raised: Exception, family: type[WorkspaceError], retryable: bool, message: str
) -> None:
    connection = DockerConnection("unix:///var/run/docker.sock")
    with pytest.raises(WorkspaceError) as caught, connection.errors("creating w1"):
        raise raised
    assert type(caught.value) is family
    assert caught.value.message == message
    assert caught.value.retryable is retryable
    assert caught.value.__cause__ is raised


def test_docker_py_s_own_error_for_a_missing_image_is_a_bad_request() -> None:
    answer = SimpleNamespace(
        status_code=404,
        reason="Not Found",
        url="http+docker://localhost/v1.45/containers/create",
        text="",
        json=lambda: {"message": "No such image: agent-workspaces/missing:latest"},
    )
    connection = DockerConnection("unix:///var/run/docker.sock")
    missing = r"image not found locally \(No such image: agent-workspaces/missing"
    with pytest.raises(BadRequest, match=missing), connection.errors("creating w2"):
        docker.errors.create_api_error_from_http_exception(requests.exceptions.HTTPError(response=answer))


@pytest.mark.parametrize(
    "raised", [requests.exceptions.ReadTimeout("read timed out"), requests.exceptions.ConnectTimeout("connect")]
)
def test_a_transport_timeout_is_a_retryable_timeout_naming_the_daemon(raised: Exception) -> None:
    connection = DockerConnection("tcp://10.0.0.7:2375")
    with pytest.raises(Timeout) as caught, connection.errors("listing workspaces"):
        raise raised
    assert caught.value.message == "listing workspaces: Docker did not answer in time (tcp://10.0.0.7:2375)"
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    "raised",
    [
        requests.exceptions.ConnectionError("Connection aborted: FileNotFoundError"),
        docker.errors.DockerException("Error while fetching server API version"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_a_broken_connection_is_unavailable_and_the_next_call_connects_afresh(
    fake_clients: list[FakeDockerClient], raised: Exception
) -> None:
    connection = DockerConnection("unix:///run/docker-test.sock")
    before = connection.client()
    with pytest.raises(ProviderUnavailable) as caught, connection.errors("watching events"):
        raise raised
    assert caught.value.message == (
        f"watching events: Docker daemon not reachable at unix:///run/docker-test.sock: {raised}"
    )
    assert caught.value.retryable is True
    after = connection.client()
    assert after is not before
    assert fake_clients == [before, after]


def test_workspace_errors_and_unrelated_exceptions_pass_through_untouched(fake_clients: list[FakeDockerClient]) -> None:
    connection = DockerConnection("unix:///var/run/docker.sock")
    client = connection.client()
    ours = Conflict("already translated")
    with pytest.raises(Conflict) as caught, connection.errors("destroying aw-1"):
        raise ours
    assert caught.value is ours
    with pytest.raises(KeyError), connection.errors("destroying aw-1"):
        raise KeyError("State")
    assert connection.client() is client  # neither counts as a broken connection


# ---------------------------------------------------------------------- events


END = object()


class FakeEventStream:
    """docker-py's cancellable event stream: yields what the test puts, ends on ``close``.

    ``after_close`` is what iteration meets once closed: the end (``END``) or an error,
    as a real stream whose socket was closed under it may raise.
    """

    def __init__(self, after_close: object = END) -> None:
        self.items: queue.Queue[object] = queue.Queue()
        self.after_close = after_close
        self.closed = False

    def put(self, *items: object) -> None:
        for item in items:
            self.items.put(item)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            item = self.items.get(timeout=30)
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, dict)
            yield item

    def close(self) -> None:
        self.closed = True
        self.items.put(self.after_close)


class FakeEventsClient:
    def __init__(self, stream: FakeEventStream) -> None:
        self.calls: list[dict[str, Any]] = []

        def events(**kwargs: Any) -> FakeEventStream:
            self.calls.append(kwargs)
            return stream

        self.api = SimpleNamespace(events=events)


def raw(action: str, workspace_id: str | None = "w1", *, key: str = "Action") -> dict[str, Any]:
    attributes = {"name": f"aw-{workspace_id}", "image": "agent-workspaces/base:bookworm"}
    if workspace_id is not None:
        attributes[LABEL_ID] = workspace_id
    return {"Type": "container", key: action, "Actor": {"ID": "c0ffee", "Attributes": attributes}, "time": 1}


def make_watch(stream: FakeEventStream, exits: list[str] | None = None) -> tuple[DockerEventWatch, FakeEventsClient]:
    client = FakeEventsClient(stream)

    def describe_exit(name: str) -> str:
        if exits is not None:
            exits.append(name)
        return f"{name} exited with code 3"

    return DockerEventWatch(client, "inst-7", describe_exit), client  # type: ignore[arg-type]


def test_the_watch_asks_only_for_this_instance_s_oom_die_and_destroy_events() -> None:
    _, client = make_watch(FakeEventStream())
    assert client.calls == [
        {
            "filters": {"type": "container", "label": [f"{LABEL_INSTANCE}=inst-7"], "event": ["oom", "die", "destroy"]},
            "decode": True,
        }
    ]


def test_raw_events_translate_to_container_events() -> None:
    exits: list[str] = []
    watch, _ = make_watch(FakeEventStream(), exits)
    assert watch._translate(raw("oom")) == ContainerEvent(
        "w1", "oom", "a process in the workspace was killed at its memory limit"
    )
    assert watch._translate(raw("die", "w2")) == ContainerEvent("w2", "died", "aw-w2 exited with code 3")
    assert exits == ["aw-w2"]
    assert watch._translate(raw("destroy", "w3")) == ContainerEvent(
        "w3", "vanished", "the workspace's container was removed outside the runtime"
    )
    # Older daemons name the action in ``status``.
    assert watch._translate(raw("die", "w4", key="status")) == ContainerEvent("w4", "died", "aw-w4 exited with code 3")


@pytest.mark.parametrize(
    "event",
    [
        raw("start"),
        raw("kill"),
        raw("exec_die"),
        raw("die", None),
        raw("oom", ""),
        {"Type": "container", "Action": "die", "Actor": None},
        {"Type": "container", "Action": "die"},
        {},
    ],
)
def test_other_events_and_containers_without_a_workspace_label_are_ignored(event: dict[str, Any]) -> None:
    exits: list[str] = []
    watch, _ = make_watch(FakeEventStream(), exits)
    assert watch._translate(event) is None
    assert exits == []


def test_iteration_yields_translated_events_and_a_stream_that_ends_is_unavailable() -> None:
    stream = FakeEventStream()
    stream.put(raw("start"), raw("oom", "a"), raw("die", None), raw("destroy", "b"), END)
    watch, _ = make_watch(stream)
    seen: list[ContainerEvent] = []
    with pytest.raises(ProviderUnavailable, match="the Docker event stream ended") as caught:
        for event in watch:
            seen.append(event)
    assert [(e.workspace_id, e.kind) for e in seen] == [("a", "oom"), ("b", "vanished")]
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
        docker.errors.APIError("500", response=response(500), explanation="daemon shutting down"),
        ConnectionResetError(104, "Connection reset by peer"),
        ValueError("Expecting value: line 1 column 1"),
    ],
)
def test_a_stream_error_is_unavailable(error: Exception) -> None:
    stream = FakeEventStream()
    stream.put(raw("die", "c"), error)
    watch, _ = make_watch(stream)
    events = iter(watch)
    assert next(events).workspace_id == "c"
    with pytest.raises(ProviderUnavailable, match="the Docker event stream broke") as caught:
        next(events)
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(
    "after_close", [END, requests.exceptions.ConnectionError("socket closed"), OSError(9, "EBADF")]
)
def test_close_from_another_thread_ends_a_waiting_iteration_without_error(after_close: object) -> None:
    stream = FakeEventStream(after_close)
    watch, _ = make_watch(stream)
    seen: list[ContainerEvent] = []
    first = threading.Event()
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            for event in watch:
                seen.append(event)
                first.set()
        except BaseException as exc:
            failures.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    stream.put(raw("oom", "d"))
    assert first.wait(30)
    watch.close()
    consumer.join(30)
    assert not consumer.is_alive()
    assert stream.closed
    assert failures == []
    assert [e.workspace_id for e in seen] == ["d"]


def test_close_survives_a_stream_whose_close_raises() -> None:
    stream = FakeEventStream()
    watch, _ = make_watch(stream)

    def broken_close() -> None:
        stream.items.put(END)
        raise AttributeError("'NoneType' object has no attribute 'close'")

    stream.close = broken_close  # type: ignore[method-assign]
    watch.close()
    assert list(watch) == []


# ---------------------------------------------------------------------- exit_detail


class FakeInspectClient:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.asked: list[str] = []

        def inspect_container(handle: str) -> dict[str, Any]:
            self.asked.append(handle)
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.api = SimpleNamespace(inspect_container=inspect_container)


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (
            {"OOMKilled": True, "ExitCode": 137, "Error": ""},
            "the workspace ran out of memory: its container was killed (exit 137)",
        ),
        ({"OOMKilled": False, "ExitCode": 2, "Error": ""}, "the workspace's container exited with code 2"),
        ({"ExitCode": 0}, "the workspace's container exited with code 0"),
        (
            {"OOMKilled": False, "ExitCode": 128, "Error": "failed to create task: oci runtime error"},
            "the workspace's container exited with code 128: failed to create task: oci runtime error",
        ),
    ],
)
def test_exit_detail_says_why_a_container_stopped(state: dict[str, Any], detail: str) -> None:
    client = FakeInspectClient({"Id": "c0ffee", "State": state})
    assert exit_detail(client, "aw-w5") == detail  # type: ignore[arg-type]
    assert client.asked == ["aw-w5"]


@pytest.mark.parametrize(
    "error",
    [
        docker.errors.NotFound("404", response=response(404), explanation="No such container: aw-w6"),
        requests.exceptions.ConnectionError("daemon gone"),
        requests.exceptions.ReadTimeout("slow"),
    ],
)
def test_exit_detail_falls_back_to_a_plain_stop_when_inspect_fails(error: Exception) -> None:
    assert exit_detail(FakeInspectClient(error), "aw-w6") == "the workspace's container stopped"  # type: ignore[arg-type]
