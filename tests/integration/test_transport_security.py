"""Transport security of a running runtime: no exposure without CURVE, keys admitted by `workspaces keys`,
subscribers authenticated, and a token that never reaches the log.

`workspaces serve` runs as a subprocess where the exit status and its one line matter (no
Docker: ENABLE_AGENT_WORKSPACES stays false, so only ping is served and other ops answer
`disabled`, which still proves a request got through); the in-process runtime on the fake
provider gives workspace events to subscribe to.
"""

from __future__ import annotations

import json
import logging
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from runtime.app import Runtime
from runtime.errors import Timeout, Unauthorized
from runtime.wire import Client, Subscriber
from runtime.wire.keys import KeyPair, load_key_pair, new_client_keys, server_public_key
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event, workspace_event
from tests.serving import WORKSPACES, Server, cli, free_port, serve_env

TOKEN = "transport-security-" + secrets.token_hex(16)
WRONG = "wrong-" + TOKEN  # contains the real one: a log of it would show the token too


def loopback(endpoint: str) -> str:
    return endpoint.replace("0.0.0.0", "127.0.0.1")


def offline_env(state_dir: Path, **variables: str) -> dict[str, str]:
    """A server environment without Docker: only ping is served."""
    return serve_env(state_dir, ENABLE_AGENT_WORKSPACES="false", WORKSPACE_AUTH_TOKEN=TOKEN,
                     WORKSPACE_MCP_CONFIG=str(state_dir / "mcp-none.toml"), **variables)  # fmt: skip


# ---------------------------------------------------------------------- `workspaces serve` refuses


@pytest.mark.parametrize(
    ("variable", "template"),
    [("WORKSPACE_ZMQ_ENDPOINT", "tcp://0.0.0.0:{}"), ("WORKSPACE_ZMQ_EVENTS_ENDPOINT", "tcp://*:{}")],
)
def test_serve_refuses_a_non_loopback_bind_without_curve_in_one_line(
    tmp_path: Path, variable: str, template: str
) -> None:
    value = template.format(free_port())
    served = cli(offline_env(tmp_path / "state", **{variable: value}), "serve")
    assert served.returncode == 2
    lines = served.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"workspaces: {variable}='{value}' listens beyond this machine without encryption")
    assert "set WORKSPACE_ZMQ_CURVE=true" in lines[0]


# ---------------------------------------------------------------------- `workspaces keys`


def test_workspaces_keys_new_list_and_remove(tmp_path: Path) -> None:
    env = offline_env(tmp_path / "state")
    made = cli(env, "keys", "new", "alice")
    assert made.returncode == 0, made.stderr
    output = made.stdout.decode()
    public_file = tmp_path / "state" / "curve" / "clients" / "alice.key"
    secret_file = tmp_path / "state" / "curve" / "issued" / "alice.key_secret"
    assert f"admitted: {public_file}" in output
    assert f"key file: {secret_file}" in output
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    server = server_public_key(tmp_path / "state")
    assert server is not None
    assert f"WORKSPACE_ZMQ_SERVER_KEY={server.decode()}" in output
    assert cli(env, "keys", "new", "bob", "--out", str(tmp_path / "bob")).returncode == 0

    listed = cli(env, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {
        "server": server.decode(),
        "clients": {
            "alice": load_key_pair(secret_file).public.decode(),
            "bob": load_key_pair(tmp_path / "bob" / "bob.key_secret").public.decode(),
        },
    }
    table = cli(env, "keys", "list").stdout.decode()
    assert "(server)" in table and "alice" in table and "bob" in table
    assert cli(env, "keys", "server").stdout.decode().strip() == server.decode()

    removed = cli(env, "keys", "remove", "alice")
    assert removed.returncode == 0, removed.stderr
    assert not public_file.exists() and not secret_file.exists()
    assert set(json.loads(cli(env, "keys", "list", "--json").stdout)["clients"]) == {"bob"}
    again = cli(env, "keys", "remove", "alice")
    assert (again.returncode, again.stderr.decode().strip()) == (
        2, "workspaces: no client key named 'alice' (see: workspaces keys list)"
    )  # fmt: skip
    assert cli(env, "keys", "new", "../escape").returncode == 2


# ---------------------------------------------------------------------- CURVE on every interface


def test_serve_with_curve_on_every_interface_answers_listed_keys_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    request_port, events_port = free_port(), free_port()
    env = offline_env(
        state,
        WORKSPACE_ZMQ_ENDPOINT=f"tcp://0.0.0.0:{request_port}",
        WORKSPACE_ZMQ_EVENTS_ENDPOINT=f"tcp://0.0.0.0:{events_port}",
        WORKSPACE_ZMQ_CURVE="true",
    )
    assert cli(env, "keys", "new", "alice").returncode == 0
    assert cli(env, "keys", "new", "mallory").returncode == 0
    mallory = load_key_pair(state / "curve" / "issued" / "mallory.key_secret")
    assert cli(env, "keys", "remove", "mallory").returncode == 0
    server = Server(env, [*WORKSPACES, "--log-level", "DEBUG", "serve"])
    try:
        server.wait_ready()
        assert "(CURVE: listed client keys only)" in server.log
        client_env = {
            **env,
            "WORKSPACE_ZMQ_ENDPOINT": f"tcp://127.0.0.1:{request_port}",
            "WORKSPACE_ZMQ_CLIENT_KEY": str(state / "curve" / "issued" / "alice.key_secret"),
        }
        del client_env["WORKSPACE_ZMQ_CURVE"]  # a client machine: the server's public key comes from STATE_DIR here
        served = cli(client_env, "--timeout", "20", "providers")
        assert served.returncode == 1
        assert served.stderr.decode().startswith("workspaces: disabled:"), served.stderr  # an answer: it got through
        del client_env["WORKSPACE_ZMQ_CLIENT_KEY"]
        unkeyed = cli(client_env, "--timeout", "2", "providers")
        assert unkeyed.returncode == 1
        assert unkeyed.stderr.decode().startswith("workspaces: timeout:"), unkeyed.stderr
        server_key = server_public_key(state)
        removed = Client(f"tcp://127.0.0.1:{request_port}", TOKEN, timeout_s=2, server_key=server_key,
                         client_keys=mallory)  # fmt: skip
        with removed, pytest.raises(Timeout):
            removed.ping()
    finally:
        assert server.stop() == 0
    assert TOKEN not in server.log
    assert "refused a client from 127.0.0.1 (CURVE)" in server.log


@pytest.fixture
def curve_runtime(make_settings: MakeSettings, fake_provider: FakeProvider, tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(
        zmq_endpoint="tcp://0.0.0.0:*", zmq_events_endpoint="tcp://0.0.0.0:*", zmq_curve=True, auth_token=TOKEN
    )
    new_client_keys(settings.state_dir, "alice")
    runtime = Runtime(settings, providers={"gvisor": fake_provider}).start()
    try:
        yield runtime
    finally:
        runtime.stop()


def test_with_curve_a_listed_key_gets_replies_and_events_and_others_get_nothing(curve_runtime: Runtime) -> None:
    state = curve_runtime.settings.state_dir
    server_key = server_public_key(state)
    alice = load_key_pair(state / "curve" / "issued" / "alice.key_secret")
    endpoint, events_endpoint = loopback(curve_runtime.endpoint), loopback(curve_runtime.events_endpoint)
    assert curve_runtime.endpoint.startswith("tcp://0.0.0.0:")
    strangers: list[dict[str, Any]] = [{}, {"server_key": server_key, "client_keys": KeyPair(*zmq.curve_keypair())}]
    with (
        Client(endpoint, TOKEN, timeout_s=30, server_key=server_key, client_keys=alice) as client,
        client.subscribe(events_endpoint, ("workspace",)) as events,
        Subscriber(events_endpoint, ("workspace",), token=TOKEN, join_timeout_s=0.5) as plain_spy,
        Subscriber(events_endpoint, ("workspace",), token=TOKEN, join_timeout_s=0.5, **strangers[1]) as key_spy,
        curve_runtime.subscribe(("workspace",)) as local,  # inproc: the host process, no mechanism
    ):
        assert client.ping()["version"]
        record = client.create()
        assert wait_for_event(events, workspace_event(record.id, state="ready"), 30)
        assert wait_for_event(local, workspace_event(record.id, state="ready"), 30)
        client.destroy(record.id)
        for spy in (plain_spy, key_spy):
            with pytest.raises(Timeout):
                spy.recv(1)
        for keys in strangers:
            with Client(endpoint, TOKEN, timeout_s=2, **keys) as stranger, pytest.raises(Timeout):
                stranger.ping()


# ---------------------------------------------------------------------- the token and the log


def test_the_token_never_appears_in_the_log(
    make_settings: MakeSettings, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runtime = Runtime(make_settings(auth_token=TOKEN), providers={"gvisor": fake_provider}).start()
    try:
        with (
            Client(runtime.endpoint, TOKEN, timeout_s=30) as client,
            Subscriber(runtime.events_endpoint, ("workspace",), token=TOKEN) as events,
            Subscriber(runtime.events_endpoint, ("workspace",), token=WRONG, join_timeout_s=0.5) as spy,
        ):
            record = client.create(labels={"suite": "transport-security"})
            client.exec(record.id, ["echo", "hello"])
            wait_for_event(events, workspace_event(record.id, state="ready"), 30)
            with Client(runtime.endpoint, WRONG, timeout_s=30) as stranger, pytest.raises(Unauthorized):
                stranger.list()
            with pytest.raises(Timeout):
                spy.recv(1)
            poll_until(lambda: "refused a subscriber" in caplog.text, timeout_s=10)
            client.destroy(record.id)
    finally:
        runtime.stop()
    everything = caplog.text + "".join(repr(record.args) + str(record.exc_text) for record in caplog.records)
    assert TOKEN not in everything
