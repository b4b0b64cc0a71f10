"""/readyz says 503 while start-up reconciliation runs, 200 once the actors serve."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from runtime.app import Runtime
from runtime.messages import BackendState
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider


class SlowInventory(FakeProvider):
    """A provider whose inventory (read by start-up reconciliation) waits for a go."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()
        self.go = threading.Event()

    def inventory(self) -> dict[str, BackendState]:
        self.asked.set()
        assert self.go.wait(60), "the test never let reconciliation go on"
        return super().inventory()


def test_readyz_answers_503_until_reconciliation_is_done_then_200(make_settings: MakeSettings) -> None:
    provider = SlowInventory()
    runtime = Runtime(make_settings(http_addr="127.0.0.1:0"), providers={"gvisor": provider})
    started: dict[str, Any] = {}
    starting = threading.Thread(target=lambda: started.setdefault("runtime", runtime.start()))
    starting.start()
    try:
        assert provider.asked.wait(30)  # start() is inside reconciliation: HTTP already listens
        base = f"http://{runtime.http_address}"
        early = httpx.get(f"{base}/readyz", timeout=30)
        assert (early.status_code, early.json()) == (503, {"ready": False})
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        refused = httpx.get(
            f"{base}/api/v1/agent/workspaces", headers={"Authorization": f"Bearer {runtime.token}"}, timeout=30
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "provider_unavailable"
        assert refused.json()["error"]["retryable"] is True
        assert refused.headers["retry-after"]
    finally:
        provider.go.set()
        starting.join(60)
    try:
        assert started["runtime"] is runtime
        ready = httpx.get(f"http://{runtime.http_address}/readyz", timeout=30)
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
    finally:
        runtime.stop()
