"""The sampler on a fake provider: usage against limits, one alert per condition, hysteresis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.app import Runtime
from runtime.messages import ResourceUsage
from runtime.wire import Client, Subscriber
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import events_until_quiet, poll_until, wait_for_event, workspace_event


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


def test_memory_at_the_limit_raises_one_alert_and_one_clear_despite_hovering(
    sampled: tuple[FakeProvider, Client, Subscriber],
) -> None:
    provider, client, events = sampled
    record = client.create()
    handle = f"fake-{record.id}"
    provider.usage[handle] = ResourceUsage(cpu_seconds=0.0, memory_bytes=100 << 20)
    raised = wait_for_event(events, workspace_event(record.id, type="alert.raised"))
    assert raised["key"] == f"memory:{record.id}" and raised["resource"] == "memory"
    assert (raised["value"], raised["threshold"]) == (100.0, 100.0)
    assert "uses 100 MiB, 100% of its memory limit (threshold 100%)" in raised["message"]
    for memory in (99 << 20, 100 << 20, 98 << 20):  # hovering within the hysteresis band
        provider.usage[handle] = ResourceUsage(cpu_seconds=0.0, memory_bytes=memory)
    assert events_until_quiet(events, lambda event: event["key"] == f"memory:{record.id}", 0.3) == []
    provider.usage[handle] = ResourceUsage(cpu_seconds=0.0, memory_bytes=10 << 20)
    cleared = wait_for_event(events, workspace_event(record.id, type="alert.cleared"))
    assert cleared["key"] == f"memory:{record.id}"
    assert events_until_quiet(events, lambda event: event["key"] == f"memory:{record.id}", 0.3) == []
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
