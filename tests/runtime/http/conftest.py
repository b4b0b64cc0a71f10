"""Runtimes on the fake provider with the HTTP API on a free loopback port, and clients for them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from runtime.app import Runtime
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider

API = "/api/v1/agent/workspaces"

StartRuntime = Callable[..., Runtime]


@pytest.fixture
def start_runtime(make_settings: MakeSettings) -> Iterator[StartRuntime]:
    """Start runtimes serving HTTP on ``127.0.0.1:0``; every one is stopped afterwards.

    Keyword arguments go to the settings, except ``provider`` (a ``FakeProvider`` by default).
    """
    started: list[Runtime] = []

    def start(provider: FakeProvider | None = None, **changes: Any) -> Runtime:
        settings = make_settings(**{"http_addr": "127.0.0.1:0", **changes})
        runtime = Runtime(settings, providers={"gvisor": provider or FakeProvider()}).start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()  # stopping twice is harmless


@pytest.fixture
def runtime(start_runtime: StartRuntime) -> Runtime:
    return start_runtime()


def client(runtime: Runtime, token: str | None = None) -> httpx.Client:
    """An HTTP client of ``runtime``, with its token unless another (or ``""``: none) is given."""
    token = runtime.token if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://{runtime.http_address}", headers=headers, timeout=30)


@pytest.fixture
def http(runtime: Runtime) -> Iterator[httpx.Client]:
    with client(runtime) as made:
        yield made


def open_stream(base_url: str, token: str, timeout_s: float = 30.0) -> tuple[threading.Thread, dict[str, Any]]:
    """A client of ``/events`` in a thread of its own, returned once its response started.

    ``outcome`` gets the ``status``, then ``ended`` (the server finished the response) or
    the ``error`` that ended it.
    """
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    def follow() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with (
                httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s) as http,
                http.stream("GET", f"{API}/events") as response,
            ):
                outcome["status"] = response.status_code
                connected.set()
                for _ in response.iter_bytes():
                    pass
            outcome["ended"] = True
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connected.set()

    client = threading.Thread(target=follow, daemon=True)
    client.start()
    assert connected.wait(timeout_s)
    assert outcome.get("status") == 200, outcome
    return client, outcome


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The wire error of an error response (the body must be exactly ``{"error": {...}}``)."""
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = msgspec.json.decode(response.content)
    assert list(body) == ["error"]
    assert set(body["error"]) == {"code", "message", "retryable"}
    error: dict[str, Any] = body["error"]
    return error


class EventStream:
    """A server-sent event stream read event by event (``data`` decoded).

    A keep-alive comment fails the test: the server sends one only after a quiet
    ``sse._KEEPALIVE_S``, so whatever was expected did not come (and a read never
    waits for ever on a stream kept alive).
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any] | None:
        """The next event, or ``None`` once the stream ended."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if "data" in fields:
                    event: dict[str, Any] = msgspec.json.decode(fields["data"])
                    assert fields["id"] == str(event["seq"])
                    assert fields["event"] == event["type"]
                    return event
                continue
            if line.startswith(":"):
                raise AssertionError(f"the stream went quiet ({line!r}) before the next event")
            name, _, value = line.partition(": ")
            fields[name] = value
        return None

    def rest(self) -> list[dict[str, Any]]:
        """Every event up to the end of the stream."""
        events = []
        while (event := self.next()) is not None:
            events.append(event)
        return events
