"""What the backend reports reaches the right workspace; health checks catch the rest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, CapacityExceeded, Conflict
from runtime.messages import ContainerEvent
from runtime.wire import Client, Subscriber
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import wait_for_event, workspace_event


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def runtime(make_settings: MakeSettings, provider: FakeProvider) -> Iterator[Runtime]:
    # A fast health interval, so checks run while the test waits for their events.
    rt = Runtime(make_settings(max_concurrent=1, health_interval_s=0.05), providers={"gvisor": provider}).start()
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    with runtime.client(timeout_s=10) as c:
        yield c


@pytest.fixture
def events(runtime: Runtime, client: Client) -> Iterator[Subscriber]:
    with runtime.subscribe(("workspace", "alert")) as subscriber:
        client.ping()
        yield subscriber


def test_an_oom_kill_is_recorded_and_published_and_the_workspace_lives_on(
    client: Client, provider: FakeProvider, events: Subscriber
) -> None:
    record = client.create(memory="64M")
    provider.emit(ContainerEvent(record.id, "oom", "a process in the workspace was killed at its memory limit"))
    event = wait_for_event(events, lambda e: e.get("workspace_id") == record.id and "oom" in str(e.get("reason")))
    assert event["state"] == "ready"
    assert "killed at its memory limit (64 MiB)" in str(event["reason"])
    after = client.get(record.id)
    assert (after.state, after.oom_kills) == ("ready", 1)
    assert client.exec(record.id, ["true"]).exit_code == 0
    client.destroy(record.id)


def test_a_container_that_dies_fails_its_workspace_and_frees_capacity(
    client: Client, provider: FakeProvider, events: Subscriber
) -> None:
    record = client.create()
    with pytest.raises(CapacityExceeded):
        client.create()
    provider.emit(
        ContainerEvent(record.id, "died", "the workspace ran out of memory: its container was killed (exit 137)")
    )
    wait_for_event(events, workspace_event(record.id, state="failed"))
    failed = client.get(record.id)
    assert failed.error == "the workspace ran out of memory (256 MiB): its container was killed (exit 137)"
    assert provider.cancelled == [f"fake-{record.id}"]
    with pytest.raises(Conflict, match="is failed"):
        client.exec(record.id, ["true"])
    second = client.create()  # the slot was freed
    client.destroy(failed.id)
    assert client.get(failed.id).state == "destroyed"
    client.destroy(second.id)


def test_the_health_check_catches_a_container_removed_without_an_event(
    client: Client, provider: FakeProvider, events: Subscriber
) -> None:
    record = client.create()
    with provider.lock:
        del provider.workspaces[f"fake-{record.id}"]
    wait_for_event(events, workspace_event(record.id, state="failed"))
    assert client.get(record.id).error == "the workspace's container no longer exists"


def test_the_health_check_catches_a_stopped_container(
    client: Client, provider: FakeProvider, events: Subscriber
) -> None:
    record = client.create()
    provider.stopped.add(f"fake-{record.id}")
    wait_for_event(events, workspace_event(record.id, state="failed"))
    assert client.get(record.id).error == "the workspace's container exited with code 1"
    client.destroy(record.id)


def test_a_workspace_over_its_disk_budget_raises_one_alert_and_clears_it(
    client: Client, provider: FakeProvider, events: Subscriber
) -> None:
    record = client.create(disk="1M")
    handle = f"fake-{record.id}"
    provider.disk[handle] = 2 << 20
    raised = wait_for_event(events, workspace_event(record.id, type="alert.raised"))
    assert raised["key"] == f"disk:{record.id}"
    assert raised["resource"] == "disk"
    assert (raised["value"], raised["limit"]) == (2 << 20, 1 << 20)
    assert [alert["key"] for alert in client.stats()["alerts"]] == [f"disk:{record.id}"]
    assert client.get(record.id).disk_used_bytes == 2 << 20
    provider.disk[handle] = 1000
    cleared = wait_for_event(events, workspace_event(record.id, type="alert.cleared"))
    assert cleared["key"] == f"disk:{record.id}"
    assert client.stats()["alerts"] == []
    client.destroy(record.id)


def test_extend_moves_the_expiry_and_refuses_persistent_workspaces(client: Client) -> None:
    record = client.create(ttl_seconds=60)
    extended = client.extend(record.id, 3600)
    assert extended.expires_at is not None and extended.expires_at > record.created_at + 3000
    assert client.get(record.id).expires_at == extended.expires_at
    with pytest.raises(BadRequest, match="must be > 0"):
        client.extend(record.id, 0)
    client.destroy(record.id)
    persistent = client.create(persistent=True)
    with pytest.raises(Conflict, match="persistent"):
        client.extend(persistent.id, 60)
    client.destroy(persistent.id)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../etc/passwd", "contains '..'"),
        ("/workspace/a/../../etc/passwd", "contains '..'"),
        ("/etc/passwd", "outside /workspace"),
        ("/workspace", "outside /workspace"),
        ("", "empty"),
    ],
)
def test_file_paths_outside_the_workspace_are_refused_before_anything_runs(
    client: Client, provider: FakeProvider, path: str, message: str
) -> None:
    record = client.create()
    with pytest.raises(BadRequest, match=message):
        client.write_file(record.id, path, b"x")
    with pytest.raises(BadRequest, match=message):
        client.read_file(record.id, path)
    assert not provider.exec_started.is_set() and not provider.files
    client.destroy(record.id)


def test_stats_reports_workspaces_capacity_host_and_alerts(client: Client) -> None:
    record = client.create()
    stats = client.stats()
    assert stats["workspaces"] == 1
    assert stats["capacity"] == {"active": 1, "limit": 1}
    assert stats["by_state"] == {"ready": 1}
    assert set(stats["host"]) == {"cpu_pct", "mem_pct", "disk_pct"}  # before the sampler's first sample
    assert stats["host"]["cpu_pct"] is None and 0 <= stats["host"]["mem_pct"] <= 100
    assert stats["alerts"] == []
    assert stats["pool"]["size"] == 0
    client.destroy(record.id)
