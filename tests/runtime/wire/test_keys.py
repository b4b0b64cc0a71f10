"""CURVE key files under STATE_DIR/curve: made private, readable by ZeroMQ's tools, listed, removed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from runtime.errors import ConfigError
from runtime.wire.keys import (
    client_keys,
    curve_dir,
    ensure_server_keys,
    load_key_pair,
    load_public_key,
    new_client_keys,
    remove_client_key,
    server_public_key,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_key_pair_is_made_once_private_and_kept(tmp_path: Path) -> None:
    assert server_public_key(tmp_path) is None
    pair = ensure_server_keys(tmp_path)
    secret_file = curve_dir(tmp_path) / "server.key_secret"
    assert mode(secret_file) == 0o600
    assert mode(curve_dir(tmp_path)) == 0o700
    assert zmq.auth.load_certificate(secret_file) == (pair.public, pair.secret)  # ZeroMQ's own format
    assert zmq.curve_public(pair.secret) == pair.public
    assert server_public_key(tmp_path) == pair.public
    assert ensure_server_keys(tmp_path) == pair


def test_a_lost_public_file_is_made_again_from_the_secret_one(tmp_path: Path) -> None:
    pair = ensure_server_keys(tmp_path)
    (curve_dir(tmp_path) / "server.key").unlink()
    assert ensure_server_keys(tmp_path) == pair
    assert server_public_key(tmp_path) == pair.public


def test_a_new_client_key_is_admitted_and_its_key_file_is_private(tmp_path: Path) -> None:
    public_file, secret_file = new_client_keys(tmp_path, "alice")
    assert public_file == curve_dir(tmp_path) / "clients" / "alice.key"
    assert mode(secret_file) == 0o600
    pair = load_key_pair(secret_file)
    assert client_keys(tmp_path) == {"alice": pair.public}
    assert zmq.auth.load_certificate(public_file) == (pair.public, None)


def test_a_client_key_file_can_go_elsewhere_and_names_are_unique(tmp_path: Path) -> None:
    _, secret_file = new_client_keys(tmp_path / "state", "ci-runner.1", tmp_path / "out")
    assert secret_file == tmp_path / "out" / "ci-runner.1.key_secret"
    with pytest.raises(ConfigError, match="exists"):
        new_client_keys(tmp_path / "state", "ci-runner.1")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 65, "spa ce"])
def test_a_key_name_that_is_not_a_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="key name"):
        new_client_keys(tmp_path, name)


def test_removing_a_client_key_stops_listing_it(tmp_path: Path) -> None:
    new_client_keys(tmp_path, "alice")
    new_client_keys(tmp_path, "bob")
    removed = remove_client_key(tmp_path, "alice")
    assert [path.name for path in removed] == ["alice.key", "alice.key_secret"]
    assert set(client_keys(tmp_path)) == {"bob"}
    assert remove_client_key(tmp_path, "alice") == []


def test_keys_made_by_pyzmq_are_listed_too(tmp_path: Path) -> None:
    clients = curve_dir(tmp_path) / "clients"
    clients.mkdir(parents=True)
    public_file, _ = zmq.auth.create_certificates(clients, "made-elsewhere")
    assert client_keys(tmp_path) == {"made-elsewhere": zmq.auth.load_certificate(public_file)[0]}


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    _, secret_file = new_client_keys(tmp_path, "alice")
    secret_file.chmod(0o644)
    with pytest.raises(ConfigError, match="must be private"):
        load_key_pair(secret_file)


def test_a_public_key_is_read_from_z85_text_or_from_a_key_file(tmp_path: Path) -> None:
    pair = ensure_server_keys(tmp_path)
    assert load_public_key(pair.public.decode()) == pair.public
    assert load_public_key(str(curve_dir(tmp_path) / "server.key")) == pair.public
    with pytest.raises(ConfigError, match="neither a 40-character Z85 public key nor a readable key file"):
        load_public_key("not-a-key")
