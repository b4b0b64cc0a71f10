"""Retried requests, snapshots and shutdown, through a real runtime on a fake provider."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zmq

from runtime.app import Runtime
from runtime.errors import ProviderUnavailable
from runtime.messages import Request, encode
from runtime.wire import Client
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until


class RawClient:
    """A DEALER that sends exactly what it is told, to replay requests by hand."""

    def __init__(self, runtime: Runtime, identity: bytes = b"raw-client") -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.ROUTING_ID, identity)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, 10_000)
        self.socket.connect(runtime.endpoint)
        self.token = runtime.token

    def send(self, request_id: str, op: str, args: dict[str, Any]) -> None:
        self.socket.send(encode(Request(request_id, op, self.token, msgspec.Raw(encode(args)))))

    def recv(self) -> dict[str, Any]:
        return msgspec.msgpack.decode(self.socket.recv())  # type: ignore[no-any-return]

    def nothing_more(self, within_ms: int = 300) -> bool:
        return not self.socket.poll(within_ms)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


@pytest.fixture
def raw(fake_runtime: Runtime) -> Iterator[RawClient]:
    client = RawClient(fake_runtime)
    yield client
    client.close()


def test_a_create_retried_while_in_flight_and_after_its_reply_runs_once(
    fake_runtime: Runtime, fake_provider: FakeProvider, raw: RawClient
) -> None:
    fake_provider.boot_gate = threading.Event()
    raw.send("create-1", "create", {})
    raw.send("create-1", "create", {})  # the client gave up waiting and retried
    poll_until(lambda: fake_runtime.client().stats()["workspaces"] == 1)
    fake_provider.boot_gate.set()
    first = raw.recv()
    assert first["ok"] and first["id"] == "create-1"
    assert raw.nothing_more()  # one reply for the two sends
    raw.send("create-1", "create", {})
    assert raw.recv() == first
    assert fake_provider.created == 1


def test_an_exec_retried_after_its_reply_is_answered_without_running_again(
    fake_runtime: Runtime, fake_provider: FakeProvider, raw: RawClient
) -> None:
    with fake_runtime.client() as client:
        workspace = client.create()
    for _ in range(3):
        raw.send("exec-1", "exec", {"workspace_id": workspace.id, "cmd": ["echo", "once"]})
        reply = raw.recv()
        assert reply["ok"] and reply["result"]["stdout"] == b"echo once"
    assert fake_provider.execs == 1
    raw.send("exec-2", "exec", {"workspace_id": workspace.id, "cmd": ["true"]})
    assert raw.recv()["ok"]
    assert fake_provider.execs == 2  # a new id is a new request


def test_a_retryable_refusal_is_not_kept_so_the_retry_runs(
    fake_runtime: Runtime, fake_provider: FakeProvider, raw: RawClient
) -> None:
    raw.send("read-before", "read_file", {"workspace_id": "ws_none", "path": "/workspace/x"})
    assert raw.recv()["error"]["code"] == "not_found"
    with fake_runtime.client() as client:
        client.create()
        client.create()
    fake_runtime._ctx.boards.admission._limit = 2  # type: ignore[union-attr]  # full from now on
    raw.send("create-full", "create", {})
    refused = raw.recv()
    assert refused["error"]["code"] == "capacity" and refused["error"]["retryable"]
    fake_runtime._ctx.boards.admission._limit = 3  # type: ignore[union-attr]
    raw.send("create-full", "create", {})
    assert raw.recv()["ok"]


def test_a_create_that_failed_in_the_backend_runs_again_when_retried(
    fake_runtime: Runtime, fake_provider: FakeProvider, raw: RawClient
) -> None:
    fake_provider.fail_create = ProviderUnavailable("the daemon went away mid-create")
    raw.send("create-2", "create", {})
    failed = raw.recv()
    assert failed["error"]["code"] == "provider_unavailable" and failed["error"]["retryable"]
    fake_provider.fail_create = None
    raw.send("create-2", "create", {})
    assert raw.recv()["ok"]
    assert fake_provider.created == 1


def test_a_create_is_recognised_after_a_restart_by_its_client_and_id(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    settings = make_settings()
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        made = msgspec.msgpack.decode(client.request("create", {}, request_id="task-7"))
        identity = client.identity
    with Runtime(settings, providers={"gvisor": provider}) as runtime:
        with runtime.client() as stranger:
            other = msgspec.msgpack.decode(stranger.request("create", {}, request_id="task-7"))
        with Client(runtime.inproc_endpoint, runtime.token, context=runtime._zmq, identity=identity) as again:
            retried = msgspec.msgpack.decode(again.request("create", {}, request_id="task-7"))
    assert retried["id"] == made["id"] and retried["state"] == "ready"
    assert other["id"] != made["id"]  # another client's task-7 is another request
    assert provider.created == 2


def test_a_rolled_back_create_runs_anew_when_retried(make_settings: MakeSettings) -> None:
    provider = FakeProvider(boot_gate=threading.Event())
    settings = make_settings()
    runtime = Runtime(settings, providers={"gvisor": provider}).start()
    client = runtime.client(timeout_s=0.5)
    identity = client.identity
    with pytest.raises(Exception, match="no reply"):
        client.request("create", {}, request_id="task-8")
    client.close()
    runtime.stop(grace_s=0)  # the create is still booting: it will be rolled back
    provider.boot_gate.set()
    with (
        Runtime(settings, providers={"gvisor": provider}) as runtime,
        Client(runtime.inproc_endpoint, runtime.token, context=runtime._zmq, identity=identity) as again,
    ):
        retried = msgspec.msgpack.decode(again.request("create", {}, request_id="task-8"))
        assert retried["state"] == "ready"
        assert [record.id for record in again.list()] == [retried["id"]]


def test_snapshot_returns_the_live_records_and_the_seq_they_reflect(fake_runtime: Runtime) -> None:
    with fake_runtime.client() as client, fake_runtime.subscribe(("workspace",)) as events:
        kept, gone = client.create(), client.create()
        client.destroy(gone.id)
        snapshot = client.snapshot()
        assert [record.id for record in snapshot.workspaces] == [kept.id]
        last_seq = 0
        while last_seq < snapshot.seq:
            _, event = events.recv(5)
            last_seq = event["seq"]
        assert last_seq == snapshot.seq  # the snapshot is exactly as of that event


def test_stop_refuses_new_requests_and_answers_those_still_running(
    make_settings: MakeSettings, fake_provider: FakeProvider
) -> None:
    runtime = Runtime(make_settings(), providers={"gvisor": fake_provider}).start()
    with runtime.client() as client:
        workspace = client.create()
    fake_provider.gate = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            with Client(endpoint, runtime.token, timeout_s=10) as c:
                c.exec(workspace.id, ["sleep", "100"])
        except ProviderUnavailable as exc:
            outcome.append(exc)

    endpoint = runtime.endpoint
    running = threading.Thread(target=run)
    running.start()
    assert fake_provider.exec_started.wait(5)
    gateway = runtime._gateway
    assert gateway is not None
    stopper = threading.Thread(target=runtime.stop, kwargs={"grace_s": 2.0})
    stopper.start()
    poll_until(lambda: gateway._draining)
    with Client(endpoint, runtime.token, timeout_s=5) as late, pytest.raises(ProviderUnavailable) as refused:
        late.get(workspace.id)
    assert refused.value.retryable and "shutting down" in refused.value.message
    stopper.join(30)
    running.join(10)
    fake_provider.gate.set()
    assert len(outcome) == 1 and not outcome[0].retryable  # type: ignore[attr-defined]
    assert "outcome is unknown" in str(outcome[0])
