"""A host's ASGI server that still runs when the runtime stops does not hold the stop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from runtime.app import Runtime
from runtime.http import app
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until


@pytest.fixture
def runtime(make_settings: MakeSettings) -> Iterator[Runtime]:
    runtime = Runtime(make_settings(), providers={"gvisor": FakeProvider()}).start()
    yield runtime
    runtime.stop()  # a second stop is harmless


def test_stopping_the_runtime_under_a_running_host_server_returns_and_the_app_then_answers_503(
    runtime: Runtime,
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app(runtime), log_config=None, log_level="warning"))
    serving = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listener])))
    serving.start()
    auth = {"Authorization": f"Bearer {runtime.token}"}
    stream_open = threading.Event()
    stream_end: list[str] = []

    def follow() -> None:
        with httpx.stream("GET", f"{base}/api/v1/agent/workspaces/events", headers=auth, timeout=60) as response:
            stream_open.set()
            for _ in response.iter_lines():
                pass
            stream_end.append("ended")

    follower = threading.Thread(target=follow)
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            poll_until(lambda: server.started, timeout_s=30)
            answer = client.get("/api/v1/agent/workspaces/providers")
            assert answer.status_code == 200
            follower.start()
            assert stream_open.wait(30)

            stopping = threading.Thread(target=runtime.stop)
            stopping.start()
            stopping.join(60)
            assert not stopping.is_alive(), "Runtime.stop is held by the host server's sockets"
            follower.join(30)
            assert stream_end == ["ended"]

            after = client.get("/api/v1/agent/workspaces/providers")
            assert after.status_code == 503
            assert after.json()["error"] == {
                "code": "provider_unavailable",
                "message": "the runtime has stopped",
                "retryable": False,
            }
            ready = client.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
            assert client.get("/healthz").status_code == 200
    finally:
        server.should_exit = True
        serving.join(30)
        listener.close()
    assert not serving.is_alive()
