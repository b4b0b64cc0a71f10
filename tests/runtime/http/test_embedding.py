"""``runtime.http.app(runtime)`` mounted in a host's own uvicorn server, started and stopped by the host."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import uvicorn

from runtime.app import Runtime
from runtime.http import HttpApp, app
from runtime.http.responses import Receive, Scope, Send
from tests.runtime.http.conftest import API, open_stream

_BOUND_S = 30.0
"""How long a thread is given to end (a safety net against a hang, not a measurement)."""


class Host:
    """A host's uvicorn server in a thread of its own, on a socket the host bound (so port 0 works).

    The lifespan messages the application sends are recorded in ``lifespan``.
    """

    def __init__(self, served: HttpApp, **config: Any) -> None:
        self.app = served
        self.lifespan: list[str] = []
        self.listening = socket.socket()
        self.listening.bind(("127.0.0.1", 0))
        self.listening.listen()
        host, port = self.listening.getsockname()
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self._recorded, interface="asgi3", lifespan="on", log_config=None, access_log=False, **config
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="host-uvicorn", daemon=True)

    async def _recorded(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: MutableMapping[str, Any]) -> None:
            if scope["type"] == "lifespan":
                self.lifespan.append(message["type"])
            await send(message)

        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, sending)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.listening]))

    def start(self) -> Host:
        # The socket already listens: requests wait in its backlog until uvicorn accepts them.
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(_BOUND_S)
        self.listening.close()


@pytest.fixture
def host(fake_runtime: Runtime) -> Iterator[Host]:
    made = Host(app(fake_runtime)).start()
    yield made
    made.stop()


def stopped_in_time(runtime: Runtime) -> bool:
    stopper = threading.Thread(target=runtime.stop, name="runtime-stop")
    stopper.start()
    stopper.join(_BOUND_S)
    return not stopper.is_alive()


def test_the_app_in_a_hosts_server_answers_the_providers(fake_runtime: Runtime, host: Host) -> None:
    with httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {fake_runtime.token}"}) as http:
        response = http.get(f"{API}/providers")
    assert response.status_code == 200
    assert [(provider["name"], provider["healthy"]) for provider in response.json()] == [("gvisor", True)]


def test_the_hosts_shutdown_runs_the_apps_lifespan_shutdown_and_then_the_runtime_stops(
    fake_runtime: Runtime, host: Host
) -> None:
    with httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {fake_runtime.token}"}) as http:
        assert http.get(f"{API}/providers").status_code == 200  # the app's Gateway connection is open
    host.stop()
    assert not host.thread.is_alive(), "the host's server did not stop"
    assert host.lifespan == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert stopped_in_time(fake_runtime), "Runtime.stop() hung after the host's server stopped"


def test_a_host_that_ends_the_streams_first_stops_with_an_event_stream_client_connected(
    fake_runtime: Runtime, host: Host
) -> None:
    client, outcome = open_stream(host.url, fake_runtime.token)
    assert host.loop is not None
    host.loop.call_soon_threadsafe(host.app.end_streams)  # as the runtime's own HttpServer does
    host.stop()
    client.join(_BOUND_S)
    assert not host.thread.is_alive(), "the host's server did not stop"
    assert not client.is_alive()
    assert outcome.get("ended") is True, outcome
    assert host.lifespan == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert stopped_in_time(fake_runtime)


def test_a_host_with_a_graceful_shutdown_timeout_stops_with_an_event_stream_client_connected(
    fake_runtime: Runtime,
) -> None:
    # uvicorn sends lifespan.shutdown only once every connection has closed, and an event
    # stream stays open: docs/http.md has hosts set timeout_graceful_shutdown (or call
    # end_streams on the loop, above), after which uvicorn cancels what still runs.
    host = Host(app(fake_runtime), timeout_graceful_shutdown=1).start()
    client, _ = open_stream(host.url, fake_runtime.token)
    host.stop()
    client.join(_BOUND_S)
    assert not host.thread.is_alive(), "the host's server did not stop"
    assert not client.is_alive()
    assert host.lifespan == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert stopped_in_time(fake_runtime)
