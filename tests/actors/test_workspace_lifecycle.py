"""Workspace lifecycles through a real runtime (Gateway, actors, LMDB) on a fake provider."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from actors.names import workspace_name
from actors.workspace import WorkspaceActor
from runtime.app import Runtime
from runtime.errors import BadRequest, CapacityExceeded, Conflict, Disabled, NotFound, ProviderUnavailable
from runtime.messages import Completed
from runtime.wire import Client
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until


@pytest.fixture
def client(fake_runtime: Runtime) -> Iterator[Client]:
    with fake_runtime.client(timeout_s=10) as c:
        yield c


def test_create_exec_destroy_through_the_embedded_runtime(client: Client) -> None:
    record = client.create(labels={"team": "a"}, env={"GREETING": "hi"})
    assert record.state == "ready"
    assert record.id.startswith("ws_")
    assert (record.provider, record.runtime) == ("gvisor", "fake")
    assert (record.cpu, record.memory_bytes) == (1.0, 256 << 20)
    assert record.expires_at is not None and record.expires_at > record.created_at
    result = client.exec(record.id, ["echo", "hello"], stdin=b"in")
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"echo hello", b"in")
    assert client.exec(record.id, "echo hi | wc").stdout == b"sh -c echo hi | wc"
    client.destroy(record.id)
    client.destroy(record.id)  # idempotent
    assert client.get(record.id).state == "destroyed"


def test_get_and_list_filter_by_labels_and_state(client: Client) -> None:
    a = client.create(labels={"team": "a", "tier": "x"})
    b = client.create(labels={"team": "b"})
    assert client.get(a.id).labels == {"team": "a", "tier": "x"}
    assert [r.id for r in client.list(labels={"team": "a"})] == [a.id]
    assert {r.id for r in client.list(state="ready")} == {a.id, b.id}
    client.destroy(b.id)
    assert [r.id for r in client.list()] == [a.id]
    assert [r.id for r in client.list(state="destroyed")] == [b.id]
    client.destroy(a.id)


def test_every_state_change_is_published_with_increasing_seq(fake_runtime: Runtime, client: Client) -> None:
    with fake_runtime.subscribe(("workspace",)) as events:
        client.ping()
        record = client.create()
        client.destroy(record.id)
        seen = [events.recv(5)[1] for _ in range(4)]
    assert [e["state"] for e in seen] == ["creating", "ready", "stopping", "destroyed"]
    assert all(e["workspace_id"] == record.id and e["type"] == "workspace.state" for e in seen)
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_persistent_workspaces_never_expire_and_ttl_sets_expiry(client: Client) -> None:
    persistent = client.create(persistent=True)
    assert persistent.expires_at is None
    short = client.create(ttl_seconds=60)
    assert short.expires_at == pytest.approx(short.created_at + 60)
    for record in (persistent, short):
        client.destroy(record.id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"memory": "lots"}, "memory='lots' is not a size"),
        ({"memory": "1M"}, "below the minimum"),
        ({"cpu": 0}, "cpu=0 is out of range"),
        ({"env": {"1BAD": "x"}}, "env name '1BAD' is not valid"),
        ({"labels": {"": "x"}}, "label '' is not valid"),
        ({"ttl_seconds": -5}, "must be > 0"),
        ({"persistent": True, "ttl_seconds": 5}, "never expire"),
        ({"provider": "vmware"}, "provider='vmware' is unknown"),
    ],
)
def test_invalid_create_requests_are_refused_clearly(client: Client, args: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        client.create(**args)  # type: ignore[arg-type]
    assert client.list() == []


def test_a_provider_that_is_not_running_is_unavailable(client: Client) -> None:
    with pytest.raises(ProviderUnavailable, match="firecracker is not running") as caught:
        client.create(provider="firecracker")
    assert caught.value.retryable is False


def test_unknown_and_destroyed_workspaces_are_reported_as_such(client: Client) -> None:
    with pytest.raises(NotFound):
        client.exec("ws_000000000000", ["true"])
    with pytest.raises(NotFound):
        client.get("ws_000000000000")
    with pytest.raises(NotFound):
        client.destroy("ws_000000000000")
    record = client.create()
    client.destroy(record.id)
    with pytest.raises(Conflict, match="is destroyed"):
        client.exec(record.id, ["true"])


def test_exec_refuses_empty_commands_and_bad_timeouts(client: Client) -> None:
    record = client.create()
    with pytest.raises(BadRequest, match="cmd is empty"):
        client.exec(record.id, [])
    with pytest.raises(BadRequest, match="cmd is empty"):
        client.exec(record.id, "  ")
    with pytest.raises(BadRequest, match="timeout_s"):
        client.exec(record.id, ["true"], timeout_s=-1)
    client.destroy(record.id)


def test_the_capacity_limit_holds_under_concurrent_creates(make_settings: MakeSettings) -> None:
    runtime = Runtime(make_settings(max_concurrent=3), providers={"gvisor": FakeProvider()}).start()
    outcomes: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        with runtime.client(timeout_s=10) as c:
            try:
                c.create()
                outcome = "ok"
            except CapacityExceeded as exc:
                assert exc.retryable
                outcome = "capacity"
        with lock:
            outcomes.append(outcome)

    try:
        threads = [threading.Thread(target=create) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["capacity"] * 17 + ["ok"] * 3
        with runtime.client() as c:
            first = c.list()[0]
            c.destroy(first.id)
            c.create()  # the freed slot is usable
            for record in c.list():
                c.destroy(record.id)
    finally:
        runtime.stop()


def test_a_failed_create_is_recorded_and_frees_its_slot(make_settings: MakeSettings) -> None:
    provider = FakeProvider(fail_create=ProviderUnavailable("daemon exploded", retryable=False))
    runtime = Runtime(make_settings(max_concurrent=1), providers={"gvisor": provider}).start()
    try:
        with runtime.client() as c:
            with pytest.raises(ProviderUnavailable, match="daemon exploded"):
                c.create()
            [failed] = c.list(state="failed")
            assert failed.error == "daemon exploded"
            provider.fail_create = None
            record = c.create()  # the slot was released
            c.destroy(record.id)
            c.destroy(failed.id)
            assert c.get(failed.id).state == "destroyed"
    finally:
        runtime.stop()


def test_a_destroy_queued_behind_a_failed_create_is_answered(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failed create's actor decides to stop; a destroy already in its mailbox used to be
    # taken up and then lost with the actor (its client waited for nothing). Now it is refused
    # as retryable, and the client's retry reaches a new actor.
    held = threading.Event()
    real_booted = WorkspaceActor._booted

    def booted(self: WorkspaceActor, done: Completed) -> None:
        held.wait(30)
        real_booted(self, done)

    monkeypatch.setattr(WorkspaceActor, "_booted", booted)
    provider = FakeProvider(fail_create=ProviderUnavailable("no such image", retryable=False))
    runtime = Runtime(make_settings(), providers={"gvisor": provider}).start()
    outcomes: list[BaseException | None] = []
    try:
        with runtime.client() as creator, runtime.client(timeout_s=10) as destroyer:
            destroyer.retries = 3

            def create() -> None:
                with pytest.raises(ProviderUnavailable, match="no such image"):
                    creator.create()

            creating = threading.Thread(target=create)
            creating.start()
            poll_until(lambda: bool(destroyer.list(state="creating")))
            [record] = destroyer.list(state="creating")
            assert runtime.context is not None
            actor = runtime.context.registry.get(workspace_name(record.id))
            assert actor is not None

            def destroy() -> None:
                try:
                    destroyer.destroy(record.id)
                except BaseException as exc:  # reported below
                    outcomes.append(exc)
                else:
                    outcomes.append(None)

            destroying = threading.Thread(target=destroy)
            destroying.start()
            poll_until(lambda: actor.actor_inbox.qsize() > 0)  # the destroy waits behind the failed create
            held.set()
            creating.join(30)
            destroying.join(30)
            assert outcomes == [None]
            assert destroyer.get(record.id).state == "destroyed"
    finally:
        held.set()
        runtime.stop()


def test_an_unhealthy_provider_answers_provider_unavailable(make_settings: MakeSettings) -> None:
    runtime = Runtime(make_settings(), providers={"gvisor": FakeProvider(healthy=False)}).start()
    try:
        with runtime.client() as c:
            with pytest.raises(ProviderUnavailable, match="unhealthy: fake provider switched off") as caught:
                c.create()
            assert caught.value.retryable
            [status] = c.providers()
            assert (status.name, status.healthy, status.runtime) == ("gvisor", False, "fake")
    finally:
        runtime.stop()


def test_destroy_during_an_exec_ends_both_cleanly(fake_runtime: Runtime, fake_provider: FakeProvider) -> None:
    fake_provider.gate = threading.Event()
    with fake_runtime.client(timeout_s=10) as c:
        record = c.create()
    outcome: list[BaseException] = []

    def run() -> None:
        with fake_runtime.client(timeout_s=10) as c:
            try:
                c.exec(record.id, ["sleep", "100"])
            except Conflict as exc:
                outcome.append(exc)

    exec_thread = threading.Thread(target=run)
    exec_thread.start()
    assert fake_provider.exec_started.wait(5)
    with fake_runtime.client(timeout_s=10) as c:
        assert c.get(record.id).state == "ready"  # a running exec never blocks get
        c.destroy(record.id)
        assert c.get(record.id).state == "destroyed"
    fake_provider.gate.set()
    exec_thread.join(10)
    assert len(outcome) == 1
    assert "destroyed while the command ran" in str(outcome[0])


def test_with_the_master_switch_off_only_ping_is_served(make_settings: MakeSettings) -> None:
    runtime = Runtime(make_settings(enabled=False), providers={"gvisor": FakeProvider()}).start()
    try:
        with runtime.client() as c:
            assert "version" in c.ping()
            for call in (c.create, c.list, c.providers, lambda: c.get("ws_1"), lambda: c.exec("ws_1", ["true"])):
                with pytest.raises(Disabled, match="ENABLE_AGENT_WORKSPACES=true"):
                    call()
    finally:
        runtime.stop()


def test_workspaces_survive_a_runtime_restart_and_stay_usable(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    settings = make_settings()
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as c:
        record = c.create()
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as c:
        assert c.get(record.id).state == "ready"
        assert c.exec(record.id, ["true"]).exit_code == 0
        c.destroy(record.id)
