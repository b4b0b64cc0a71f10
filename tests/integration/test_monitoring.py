"""The sampler, provider health and the operator's views, against the real Docker daemon."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import ProviderUnavailable
from runtime.providers.docker import DockerProvider
from tests.conftest import MakeDockerRuntime, MakeSettings, remove_leftovers
from tests.helpers import UnixProxy, events_until, wait_for_event, workspace_event

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("oci_runtime", ["runsc", "runc"])
def test_a_memory_hog_at_80_percent_of_its_limit_raises_one_alert_and_one_clear(
    make_docker_runtime: MakeDockerRuntime, oci_runtime: str
) -> None:
    runtime = make_docker_runtime(runtimes=(oci_runtime,), sample_interval_s=0.2, alert_threshold_pct=70)
    with runtime.client() as client, runtime.subscribe(("alert", "workspace")) as events:
        record = client.create(memory="256M")
        key = f"memory:{record.id}"
        with runtime.client() as hogger:  # a client per thread
            hog = threading.Thread(
                target=hogger.exec,
                args=(record.id, ["python3", "-c", "import time; b = bytearray(205 << 20); time.sleep(3)"]),
            )
            hog.start()
            raised = wait_for_event(events, lambda event: event.get("key") == key)
            hog.join(60)
        assert raised["type"] == "alert.raised" and raised["workspace_id"] == record.id
        assert raised["value"] >= raised["threshold"] == 70, raised  # the sample may catch the allocation midway
        following = wait_for_event(events, lambda event: event.get("key") == key)  # the hog has ended
        assert client.stats()["usage"][record.id]["memory_pct"] < 50
        client.destroy(record.id)
        # Alerts and state changes share one sequence: every alert on the key published
        # before the workspace was destroyed arrives before that event.
        destroyed = workspace_event(record.id, state="destroyed")
        rest = [following, *events_until(events, destroyed, keep=lambda event: event.get("key") == key)]
        assert [event["type"] for event in rest] == ["alert.cleared"]


def test_a_provider_whose_docker_socket_dies_turns_unhealthy_and_creates_are_refused(
    make_settings: MakeSettings, docker_client: Any, tmp_path: Path
) -> None:
    path = str(tmp_path / "docker.sock")
    proxy = UnixProxy(path)
    settings = make_settings(health_interval_s=0.5)

    def providers(instance_id: str) -> dict[str, Any]:
        provider = DockerProvider(
            instance_id=instance_id, default_image=settings.default_image, docker_host=f"unix://{path}"
        )
        return {"gvisor": provider}

    runtime = Runtime(settings, providers=providers).start()
    try:
        with runtime.client() as client, runtime.subscribe(("provider",)) as events:
            record = client.create()
            proxy.stop()
            down = wait_for_event(events, lambda event: event["type"] == "provider.health" and not event["healthy"])
            assert "not reachable" in down["detail"]
            status = client.providers()[0]
            assert not status.healthy and "not reachable" in status.detail
            with pytest.raises(ProviderUnavailable) as refused:
                client.create()
            assert refused.value.retryable
            proxy = UnixProxy(path)
            wait_for_event(events, lambda event: event["type"] == "provider.health" and event["healthy"])
            assert client.exec(record.id, ["true"]).exit_code == 0
            client.destroy(record.id)
    finally:
        runtime.stop()
        proxy.stop()
        leaked = remove_leftovers(docker_client, runtime.instance_id)
        assert not leaked
