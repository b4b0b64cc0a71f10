"""The sampler, provider health and the operator's views, against the real Docker daemon."""

from __future__ import annotations

import threading

import pytest

from runtime.client import Subscriber
from runtime.errors import Timeout
from tests.conftest import MakeDockerRuntime
from tests.helpers import wait_for_event

pytestmark = pytest.mark.docker


def events_for(events: Subscriber, key: str, within_s: float) -> list[str]:
    """The types of the alert events about ``key`` arriving within ``within_s`` of silence."""
    seen = []
    while True:
        try:
            _, event = events.recv(within_s)
        except Timeout:
            return seen
        if event["key"] == key:
            seen.append(event["type"])


@pytest.mark.parametrize("oci_runtime", ["runsc", "runc"])
def test_a_memory_hog_at_90_percent_of_its_limit_raises_one_alert_and_one_clear(
    make_docker_runtime: MakeDockerRuntime, oci_runtime: str
) -> None:
    runtime = make_docker_runtime(runtimes=(oci_runtime,), sample_interval_s=0.2, alert_threshold_pct=70)
    with runtime.client() as client, runtime.subscribe(("alert",)) as events:
        record = client.create(memory="256M")
        key = f"memory:{record.id}"
        with runtime.client() as hogger:  # a client per thread
            hog = threading.Thread(
                target=hogger.exec,
                args=(record.id, ["python3", "-c", "import time; b = bytearray(230 << 20); time.sleep(3)"]),
            )
            hog.start()
            raised = wait_for_event(events, lambda event: event["key"] == key)
            hog.join(60)
        assert raised["type"] == "alert.raised" and raised["workspace_id"] == record.id
        assert 80 <= raised["value"] <= 100, raised
        rest = events_for(events, key, within_s=2.0)
        assert rest == ["alert.cleared"]
        assert client.stats()["usage"][record.id]["memory_pct"] < 50
        client.destroy(record.id)
