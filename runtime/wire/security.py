"""Transport security of the control plane: where it may listen in the clear, how clients connect.

The request socket carries the token in every request; the event socket checks it once,
at the handshake (ZeroMQ's PLAIN mechanism, see ``runtime.wire.zap``). Neither is
encrypted, which is fine on loopback, ``ipc://`` and ``inproc://`` but not on a network:
binding anything else needs ``WORKSPACE_ZMQ_CURVE`` (CurveZMQ: encryption, the server
authenticated by its public key, clients by theirs), or start-up stops with one line
saying so (``check_exposure``).

A client connects with the server's public key and a key pair of its own
(``WORKSPACE_ZMQ_SERVER_KEY``, ``WORKSPACE_ZMQ_CLIENT_KEY``), or without CURVE; a
subscriber without CURVE sends the token by PLAIN.
"""

from __future__ import annotations

import ipaddress

import zmq

from runtime.config import Settings
from runtime.errors import ConfigError
from runtime.wire.keys import KeyPair, curve_dir, load_key_pair, load_public_key
from runtime.wire.zap import PLAIN_USERNAME

__all__ = ["check_exposure", "client_curve", "client_options", "client_socket", "is_local"]


def is_local(endpoint: str) -> bool:
    """Whether an endpoint can only be reached from this machine (loopback tcp, ipc, inproc).

    ``*``, ``0.0.0.0``, interface names and host names other than ``localhost`` may be
    reachable from elsewhere, so they are not.
    """
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond this machine without CURVE.

    Raises:
        ConfigError: An endpoint is not local and ``WORKSPACE_ZMQ_CURVE`` is off.
    """
    if settings.zmq_curve:
        return
    for variable, endpoint in (
        ("WORKSPACE_ZMQ_ENDPOINT", settings.zmq_endpoint),
        ("WORKSPACE_ZMQ_EVENTS_ENDPOINT", settings.zmq_events_endpoint),
    ):
        if not is_local(endpoint):
            raise ConfigError(
                f"{variable}={endpoint!r} listens beyond this machine without encryption: set "
                "WORKSPACE_ZMQ_CURVE=true (and give each client a key: workspaces keys new NAME), "
                "or bind a loopback address such as tcp://127.0.0.1:PORT"
            )


def client_options(
    *, server_key: bytes | None, client_keys: KeyPair | None, plain_token: str | None = None
) -> list[tuple[int, bytes]]:
    """The socket options that give a client socket its security mechanism (set before connecting).

    CURVE when given the server's public key and a client key pair; otherwise PLAIN with
    ``plain_token`` if given (the event stream), otherwise none (requests carry the token).

    Raises:
        ConfigError: Only one of ``server_key`` and ``client_keys`` was given.
    """
    if server_key is not None and client_keys is not None:
        return [
            (zmq.CURVE_SERVERKEY, server_key),
            (zmq.CURVE_PUBLICKEY, client_keys.public),
            (zmq.CURVE_SECRETKEY, client_keys.secret),
        ]
    if server_key is not None or client_keys is not None:
        raise ConfigError("CURVE needs both the server's public key and a client key pair")
    if plain_token is not None:
        return [(zmq.PLAIN_USERNAME, PLAIN_USERNAME.encode()), (zmq.PLAIN_PASSWORD, plain_token.encode())]
    return []


def client_socket(
    context: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    *,
    server_key: bytes | None,
    client_keys: KeyPair | None,
    plain_token: str | None = None,
) -> zmq.Socket[bytes]:
    """A new client socket (``LINGER`` 0) with the options of ``client_options``, ready to connect."""
    options = client_options(server_key=server_key, client_keys=client_keys, plain_token=plain_token)
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    for option, value in options:
        socket.setsockopt(option, value)
    return socket


def client_curve(settings: Settings) -> tuple[bytes, KeyPair] | None:
    """The CURVE credentials a client reads from its settings: the server's public key and its own pair.

    ``WORKSPACE_ZMQ_CLIENT_KEY`` names the client's ``.key_secret`` file;
    ``WORKSPACE_ZMQ_SERVER_KEY`` gives the server's public key (Z85, or a ``server.key``
    file), by default the one in this machine's ``STATE_DIR/curve``.

    Raises:
        ConfigError: A key is missing or unreadable.
    """
    if settings.zmq_client_key is None:
        if settings.zmq_server_key:
            raise ConfigError(
                "WORKSPACE_ZMQ_SERVER_KEY is set but WORKSPACE_ZMQ_CLIENT_KEY is not: set it to the path of "
                "this client's key file (made by: workspaces keys new NAME)"
            )
        return None
    pair = load_key_pair(settings.zmq_client_key)
    server = settings.zmq_server_key
    if not server:
        local = curve_dir(settings.state_dir) / "server.key"
        if not local.exists():
            raise ConfigError(
                "WORKSPACE_ZMQ_CLIENT_KEY is set but WORKSPACE_ZMQ_SERVER_KEY is not: set it to the server's public "
                "key (workspaces keys list, on the server) or the path of its server.key"
            )
        server = str(local)
    return load_public_key(server), pair
