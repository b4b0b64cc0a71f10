"""``workspaces keys``: the CURVE keys of the control plane, kept under ``STATE_DIR/curve``.

Run on the runtime's machine (it reads and writes the state directory, not the runtime):
``server`` makes the server key pair if missing and prints its public key; ``new NAME``
makes a client key pair and admits it; ``list`` shows the keys; ``remove NAME`` stops
admitting one (new connections are refused at once; see docs/protocol.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.cli.tables import print_json, table
from runtime.config import Settings
from runtime.errors import ConfigError
from runtime.wire.keys import client_keys, ensure_server_keys, new_client_keys, remove_client_key, server_public_key

__all__ = ["add_parsers", "keys"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``keys`` subcommands."""
    parser = commands.add_parser("keys", help="CURVE keys (WORKSPACE_ZMQ_CURVE): server, new, list, remove")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("server", help="make the server key pair if missing and print its public key")
    new = actions.add_parser("new", help="make a client key pair, admit it, and say where its files are")
    new.add_argument("name", help="letters, digits, '.', '_' or '-'")
    new.add_argument(
        "--out", type=Path, metavar="DIR", help="where the client's key file goes (default: STATE_DIR/curve/issued)"
    )
    listing = actions.add_parser("list", help="the server's public key and the admitted client keys")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove", help="stop admitting a client key")
    remove.add_argument("name")


def keys(settings: Settings, args: argparse.Namespace) -> int:
    """``workspaces keys ACTION``."""
    state_dir = settings.state_dir
    if args.action == "server":
        print(ensure_server_keys(state_dir).public.decode())
        return 0
    if args.action == "new":
        server = ensure_server_keys(state_dir).public.decode()
        public_file, secret_file = new_client_keys(state_dir, args.name, args.out)
        print(f"admitted: {public_file}")
        print(f"key file: {secret_file}  (secret: copy it to the client, mode 0600, then delete it here)")
        print(f"on the client: WORKSPACE_ZMQ_CLIENT_KEY=<that file> WORKSPACE_ZMQ_SERVER_KEY={server}")
        if not settings.zmq_curve:
            print("note: WORKSPACE_ZMQ_CURVE is off here; keys are used once it is on")
        return 0
    if args.action == "remove":
        removed = remove_client_key(state_dir, args.name)
        if not removed:
            raise ConfigError(f"no client key named {args.name!r} (see: workspaces keys list)")
        for path in removed:
            print(f"removed {path}")
        return 0
    server_key = server_public_key(state_dir)
    clients = client_keys(state_dir)
    if args.json:
        print_json(
            {"server": None if server_key is None else server_key.decode(),
             "clients": {name: key.decode() for name, key in clients.items()}}
        )  # fmt: skip
        return 0
    rows = [["NAME", "PUBLIC KEY"], ["(server)", "-" if server_key is None else server_key.decode()]]
    rows += [[name, key.decode()] for name, key in clients.items()]
    print(table(rows))
    return 0
