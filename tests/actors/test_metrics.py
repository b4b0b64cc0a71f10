"""The Prometheus endpoint: real HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.app import Runtime
from runtime.errors import ConfigError
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.serving import free_port


def scrape(address: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_the_metrics_endpoint_serves_workspaces_latencies_pool_alerts_and_health(make_settings: MakeSettings) -> None:
    settings = make_settings(metrics_addr=f"127.0.0.1:{free_port()}", warm_pool_size=1, sample_interval_s=0.05)
    with Runtime(settings, providers={"gvisor": FakeProvider()}) as runtime, runtime.client() as client:
        record = client.create(memory="128M")  # not the pool's shape: a cold create
        client.exec(record.id, ["true"])
        client.destroy(client.create(memory="128M").id)
        with pytest.raises(Exception, match="does not exist"):
            client.get("ws_000000000000")
        metrics = scrape(runtime.metrics_address)
    assert metrics["agent_workspaces_workspaces"][(("provider", "gvisor"), ("state", "ready"))] == 1
    assert metrics["agent_workspaces_workspaces"][(("provider", "gvisor"), ("state", "destroyed"))] == 1
    assert metrics["agent_workspaces_provider_healthy"][(("provider", "gvisor"), ("runtime", "fake"))] == 1
    requests = metrics["agent_workspaces_request_duration_seconds_count"]
    assert requests[(("op", "create"), ("outcome", "ok"))] == 2
    assert requests[(("op", "exec"), ("outcome", "ok"))] == 1
    assert requests[(("op", "get"), ("outcome", "error"))] == 1
    assert metrics["agent_workspaces_pool_target"][(("provider", "gvisor"),)] == 1
    assert (("provider", "gvisor"),) in metrics["agent_workspaces_pool_claims_total"]
    assert set(metrics["agent_workspaces_alerts_active"]) == {(("resource", r),) for r in ("cpu", "memory", "disk")}
    assert metrics["agent_workspaces_capacity_limit"][()] == settings.max_concurrent


def test_an_address_that_cannot_be_listened_on_stops_start_with_a_clear_line(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match=r"WORKSPACE_METRICS_ADDR='192\.0\.2\.1:9464' cannot be listened on"):
        Runtime(make_settings(metrics_addr="192.0.2.1:9464"), providers={"gvisor": FakeProvider()}).start()
