"""Transport security over real sockets: PLAIN for subscribers, CURVE beyond loopback, no exposure without it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from runtime.config import load_settings
from runtime.errors import ConfigError, Timeout, Unauthorized
from runtime.wire import Client, Subscriber
from runtime.wire.gateway import Gateway
from runtime.wire.keys import KeyPair
from runtime.wire.security import check_exposure, client_curve, is_local
from tests.helpers import poll_until
from tests.runtime.wire.test_gateway import TOKEN, Handler

Context = zmq.Context[zmq.Socket[bytes]]
WRONG = "not-the-token-" + "w" * 20
EXEC = {"workspace_id": "ws_1", "cmd": "true"}  # Handler answers it later and publishes one event


@pytest.fixture
def start(context: Context) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(endpoint: str = "tcp://127.0.0.1:*", **options: Any) -> Gateway:
        outbox = f"inproc://outbox-{secrets.token_hex(4)}"
        gateway = Gateway(
            context,
            token=TOKEN,
            request_endpoints=[endpoint, "inproc://requests"],
            event_endpoints=[endpoint, "inproc://events"],
            outbox_endpoint=outbox,
            dispatch=Handler(context, outbox),
            **options,
        )
        gateway.start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


def loopback(endpoint: str) -> str:
    """A ``tcp://0.0.0.0:PORT`` endpoint as a client on this machine reaches it."""
    return endpoint.replace("0.0.0.0", "127.0.0.1")


def pair() -> KeyPair:
    return KeyPair(*zmq.curve_keypair())


# ---------------------------------------------------------------------- where the runtime may listen


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:7710", True),
        ("tcp://127.0.0.2:*", True),
        ("tcp://localhost:7710", True),
        ("tcp://[::1]:7710", True),
        ("ipc:///run/workspaces.sock", True),
        ("inproc://workspaces", True),
        ("tcp://0.0.0.0:7710", False),
        ("tcp://*:7710", False),
        ("tcp://[::]:7710", False),
        ("tcp://192.168.1.20:7710", False),
        ("tcp://eth0:7710", False),
        ("tcp://example.com:7710", False),
    ],
)
def test_only_loopback_ipc_and_inproc_count_as_local(endpoint: str, local: bool) -> None:
    assert is_local(endpoint) is local


@pytest.mark.parametrize("variable", ["WORKSPACE_ZMQ_ENDPOINT", "WORKSPACE_ZMQ_EVENTS_ENDPOINT"])
def test_a_non_loopback_bind_without_curve_is_refused_in_one_line_naming_the_fix(variable: str) -> None:
    settings = load_settings(env={variable: "tcp://0.0.0.0:7799"})
    with pytest.raises(ConfigError) as refused:
        check_exposure(settings)
    message = refused.value.message
    assert "\n" not in message
    assert message.startswith(f"{variable}='tcp://0.0.0.0:7799' listens beyond this machine without encryption")
    assert "WORKSPACE_ZMQ_CURVE=true" in message
    check_exposure(settings.replace(zmq_curve=True))  # with CURVE it may


def test_a_client_reads_its_curve_keys_from_its_settings(tmp_path: Path) -> None:
    alice, server = pair(), pair()
    key_file = tmp_path / "alice.key_secret"
    key_file.write_text(
        f'curve\n    public-key = "{alice.public.decode()}"\n    secret-key = "{alice.secret.decode()}"\n'
    )
    key_file.chmod(0o600)
    env = {"WORKSPACE_STATE_DIR": str(tmp_path / "state")}
    assert client_curve(load_settings(env=env)) is None
    settings = load_settings(env={**env, "WORKSPACE_ZMQ_CLIENT_KEY": str(key_file)})
    with pytest.raises(ConfigError, match="WORKSPACE_ZMQ_SERVER_KEY is not"):
        client_curve(settings)
    assert client_curve(settings.replace(zmq_server_key=server.public.decode())) == (server.public, alice)
    with pytest.raises(ConfigError, match="WORKSPACE_ZMQ_CLIENT_KEY is not"):
        client_curve(load_settings(env={**env, "WORKSPACE_ZMQ_SERVER_KEY": server.public.decode()}))


# ---------------------------------------------------------------------- the event stream without CURVE


def test_a_subscriber_with_the_token_gets_events_and_one_with_a_wrong_token_gets_nothing(
    start: Callable[..., Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = start()
    endpoint = gateway.bound_event_endpoints[0]
    with (
        Client(gateway.bound_endpoints[0], TOKEN, timeout_s=5) as client,
        Subscriber(endpoint, ("workspace",), token=TOKEN, join_timeout_s=5) as admitted,
        Subscriber(endpoint, ("workspace",), token=WRONG, join_timeout_s=0.5) as refused,
    ):
        poll_until(lambda: gateway.doorkeeper.refused > 0, timeout_s=10)
        for _ in range(3):
            client.request("exec", EXEC)
            assert admitted.recv(5)[0] == "workspace"
        with pytest.raises(Timeout):
            refused.recv(1)
    assert "refused a subscriber from 127.0.0.1 (PLAIN): wrong username or token" in caplog.text
    assert TOKEN not in caplog.text
    assert WRONG not in caplog.text


def test_a_subscriber_without_credentials_gets_nothing(start: Callable[..., Gateway], context: Context) -> None:
    gateway = start()
    with Client(gateway.bound_endpoints[0], TOKEN, timeout_s=5) as client, context.socket(zmq.SUB) as bare:
        bare.setsockopt(zmq.LINGER, 0)
        bare.setsockopt(zmq.SUBSCRIBE, b"")
        bare.connect(gateway.bound_event_endpoints[0])  # the NULL mechanism: the handshake fails
        client.request("exec", EXEC)
        assert not bare.poll(1000)


def test_over_inproc_no_mechanism_runs_so_the_host_process_subscribes_as_before(
    start: Callable[..., Gateway], context: Context
) -> None:
    # libzmq runs no security handshake on inproc:// (same process, nothing on a wire): the
    # embedded host and the HTTP layer subscribe there; the token they pass is not checked.
    start()
    with (
        Client("inproc://requests", TOKEN, context=context, timeout_s=5) as client,
        Subscriber("inproc://events", ("workspace",), token=WRONG, context=context, join_timeout_s=5) as events,
    ):
        client.request("exec", EXEC)
        assert events.recv(5)[0] == "workspace"


# ---------------------------------------------------------------------- CURVE on a non-loopback bind


@pytest.fixture
def curve(start: Callable[..., Gateway]) -> tuple[Gateway, KeyPair, KeyPair, set[bytes]]:
    """A Gateway bound to every interface with CURVE, the server's pair, and alice's admitted pair."""
    server, alice = pair(), pair()
    listed = {alice.public}
    gateway = start("tcp://0.0.0.0:*", curve_secret_key=server.secret, client_keys=lambda: listed)
    return gateway, server, alice, listed


def test_with_curve_a_client_with_a_listed_key_is_served_for_requests_and_events(
    curve: tuple[Gateway, KeyPair, KeyPair, set[bytes]],
) -> None:
    gateway, server, alice, _ = curve
    assert gateway.bound_endpoints[0].startswith("tcp://0.0.0.0:")
    keys = {"server_key": server.public, "client_keys": alice}
    with Client(loopback(gateway.bound_endpoints[0]), TOKEN, timeout_s=10, **keys) as client:
        assert client.ping() == {"version": "test"}
        with client.subscribe(loopback(gateway.bound_event_endpoints[0]), ("workspace",)) as events:
            client.request("exec", EXEC)
            assert events.recv(5)[0] == "workspace"
        no_token = Client(loopback(gateway.bound_endpoints[0]), WRONG, timeout_s=10, **keys)
        with no_token, pytest.raises(Unauthorized):  # CURVE adds to the token, it does not replace it
            no_token.ping()


@pytest.mark.parametrize("who", ["no key", "an unlisted key", "a wrong server key"])
def test_with_curve_a_client_without_a_listed_key_gets_nothing(
    curve: tuple[Gateway, KeyPair, KeyPair, set[bytes]], who: str
) -> None:
    gateway, server, alice, _ = curve
    keys: dict[str, Any] = {
        "no key": {},
        "an unlisted key": {"server_key": server.public, "client_keys": pair()},
        "a wrong server key": {"server_key": pair().public, "client_keys": alice},
    }[who]
    events_endpoint = loopback(gateway.bound_event_endpoints[0])
    with (
        Client(loopback(gateway.bound_endpoints[0]), TOKEN, timeout_s=1, **keys) as stranger,
        Subscriber(events_endpoint, ("workspace",), token=TOKEN, join_timeout_s=0.5, **keys) as spy,
        Client(loopback(gateway.bound_endpoints[0]), TOKEN, timeout_s=10, server_key=server.public,
               client_keys=alice) as admitted,
    ):  # fmt: skip
        with pytest.raises(Timeout):
            stranger.ping()
        admitted.request("exec", EXEC)  # an event the spy would see if it were admitted
        with pytest.raises(Timeout):
            spy.recv(1)


def test_with_curve_removing_a_key_refuses_its_next_connection(
    curve: tuple[Gateway, KeyPair, KeyPair, set[bytes]],
) -> None:
    gateway, server, alice, listed = curve
    endpoint = loopback(gateway.bound_endpoints[0])
    refused_before = gateway.doorkeeper.refused
    listed.clear()
    removed = Client(endpoint, TOKEN, timeout_s=1, server_key=server.public, client_keys=alice)
    with removed, pytest.raises(Timeout):
        removed.ping()
    poll_until(lambda: gateway.doorkeeper.refused > refused_before, timeout_s=10)
