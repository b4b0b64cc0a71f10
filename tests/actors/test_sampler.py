"""The sampler on a fake provider: usage against limits, one alert per condition, hysteresis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from actors.names import SAMPLER
from runtime.app import Runtime
from runtime.messages import Completed, ResourceUsage
from runtime.monitoring.sampler import HostSample, Sample, WorkspaceSample
from runtime.wire import Client, Subscriber
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event, workspace_event


@pytest.fixture
def sampled(make_settings: MakeSettings) -> Iterator[tuple[FakeProvider, Client, Subscriber]]:
    provider = FakeProvider()
    # A threshold no host reaches, so only the workspace's own alerts can fire.
    settings = make_settings(sample_interval_s=0.05, alert_threshold_pct=100, default_memory=100 << 20)
    with (
        Runtime(settings, providers={"gvisor": provider}) as runtime,
        runtime.client() as client,
        runtime.subscribe(("alert",)) as events,
    ):
        yield provider, client, events


def sample(workspace_id: str, memory_mib: int, limit_mib: int = 100) -> Sample:
    """A sample in which the host is idle and one workspace uses ``memory_mib`` of its limit."""
    host = HostSample(
        cpu_pct=1.0, mem_pct=1.0, disk_pct=None, cpus=2, memory_bytes=24 << 30, reserved_cpu=1.0,
        reserved_cpu_pct=50.0, reserved_memory_bytes=limit_mib << 20, reserved_memory_pct=1.0,
    )  # fmt: skip
    workspace = WorkspaceSample(
        workspace_id=workspace_id,
        cpu_pct=None,
        memory_bytes=memory_mib << 20,
        memory_pct=100.0 * memory_mib / limit_mib,
    )
    return Sample(host, [workspace], time.time(), 0.1)


def next_alert(events: Subscriber, key: str) -> dict[str, object]:
    return wait_for_event(events, lambda event: event["key"] == key, timeout_s=10)


def test_memory_at_the_limit_raises_one_alert_and_one_clear_despite_hovering(make_settings: MakeSettings) -> None:
    # Samples are told to the sampler explicitly, one by one, so every value is judged;
    # the alerts on one key come in order, so "the next alert is the clear" proves that
    # the values hovering in between raised nothing.
    settings = make_settings(alert_threshold_pct=100, default_memory=100 << 20)
    with (
        Runtime(settings, providers={"gvisor": FakeProvider()}) as runtime,
        runtime.client() as client,
        runtime.subscribe(("alert",)) as events,
    ):
        sampler = runtime.context.registry.get(SAMPLER) if runtime.context else None
        assert sampler is not None
        record = client.create()
        key = f"memory:{record.id}"
        sampler.tell(Completed("sample", None, value=sample(record.id, 100)))
        raised = next_alert(events, key)
        assert raised["type"] == "alert.raised" and raised["workspace_id"] == record.id
        assert raised["key"] == f"memory:{record.id}" and raised["resource"] == "memory"
        assert (raised["value"], raised["threshold"]) == (100.0, 100.0)
        assert "uses 100 MiB, 100% of its memory limit (threshold 100%)" in str(raised["message"])
        for memory in (99, 100, 98, 96):  # hovering within the hysteresis band (5% below 100)
            sampler.tell(Completed("sample", None, value=sample(record.id, memory)))
        sampler.tell(Completed("sample", None, value=sample(record.id, 10)))
        cleared = next_alert(events, key)
        assert cleared["type"] == "alert.cleared" and cleared["value"] == 10.0
        assert cleared["key"] == f"memory:{record.id}"
        sampler.tell(Completed("sample", None, value=sample(record.id, 50)))  # below: nothing
        sampler.tell(Completed("sample", None, value=sample(record.id, 100)))
        again = next_alert(events, key)
        assert again["type"] == "alert.raised" and again["value"] == 100.0
        assert [alert["key"] for alert in client.stats()["alerts"]] == [key]
        client.destroy(record.id)


def test_usage_is_reported_against_each_workspace_limits_and_the_host(
    sampled: tuple[FakeProvider, Client, Subscriber],
) -> None:
    provider, client, _ = sampled
    record = client.create(cpu=0.5)
    handle = f"fake-{record.id}"
    provider.usage[handle] = ResourceUsage(cpu_seconds=0.0, memory_bytes=25 << 20)
    provider.usage[handle] = ResourceUsage(cpu_seconds=0.0, memory_bytes=25 << 20)
    poll_until(lambda: client.stats()["usage"].get(record.id, {}).get("cpu_pct") is not None)  # two samples
    stats = client.stats()
    usage = stats["usage"][record.id]
    assert (usage["memory_bytes"], usage["memory_pct"]) == (25 << 20, 25.0)
    assert usage["cpu_pct"] == 0.0  # no CPU time used between two samples
    host = stats["host"]
    assert 0 <= host["cpu_pct"] <= 100 and 0 <= host["mem_pct"] <= 100
    assert host["reserved_cpu"] == 0.5 and host["reserved_memory_bytes"] == 100 << 20
    assert stats["sampler"]["interval_s"] == 0.05 and stats["sampler"]["took_ms"] >= 0


def test_a_workspace_that_ends_has_its_alerts_cleared(sampled: tuple[FakeProvider, Client, Subscriber]) -> None:
    provider, client, events = sampled
    record = client.create()
    provider.usage[f"fake-{record.id}"] = ResourceUsage(cpu_seconds=0.0, memory_bytes=200 << 20)
    wait_for_event(events, workspace_event(record.id, type="alert.raised"))
    client.destroy(record.id)
    cleared = wait_for_event(events, workspace_event(record.id, type="alert.cleared"))
    assert "no longer running" in cleared["message"]
    assert client.stats()["alerts"] == []
