"""The ``workspaces`` command: ``serve`` the runtime, or drive one as a client.

Client commands read the endpoint and token the same way the server does (environment,
then ``WORKSPACE_CONFIG``, then defaults; the token from ``WORKSPACE_AUTH_TOKEN`` or
``STATE_DIR/token``; CURVE keys from ``WORKSPACE_ZMQ_CLIENT_KEY`` and
``WORKSPACE_ZMQ_SERVER_KEY``), print tables for humans and ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from runtime.app import Runtime
from runtime.cli.commands import COMMANDS
from runtime.cli.firecracker import add_parsers as add_firecracker_parsers
from runtime.cli.firecracker import firecracker
from runtime.cli.github import add_parsers as add_github_parsers
from runtime.cli.keys import add_parsers as add_keys_parsers
from runtime.cli.keys import keys
from runtime.cli.manager import firecracker_manager
from runtime.cli.mcp import add_parsers as add_mcp_parsers
from runtime.cli.signals import stop_on_signals
from runtime.cli.tables import print_json
from runtime.config import Settings, load_settings
from runtime.errors import ConfigError, WorkspaceError
from runtime.monitoring.doctor import run_checks
from runtime.monitoring.logs import configure
from runtime.version import __version__
from runtime.wire import Client
from runtime.wire.auth import read_token
from runtime.wire.security import client_curve, is_local

__all__ = ["main"]

log = logging.getLogger("runtime.cli")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    runtime = Runtime(settings).start()
    try:
        while not stop.wait(0.2):
            if runtime.wait_failed(0):
                break
    finally:
        runtime.stop()
    if runtime.failure:
        log.critical("exiting after the supervisor gave up: %s", runtime.failure)
        return 1
    return 0


def _doctor(args: argparse.Namespace) -> int:
    checks = run_checks()
    if args.json:
        print_json(checks)
    else:
        for check in checks:
            print(f"{check.status:5} {check.name:18} {check.detail}")
            if check.fix:
                print(f"{'':24} fix: {check.fix}")
    return 1 if any(check.status == "FAIL" for check in checks) else 0


def _client(settings: Settings, args: argparse.Namespace) -> Client:
    endpoint = args.endpoint or settings.zmq_endpoint
    server_key, client_keys = client_curve(settings) or (None, None)
    if client_keys is None and settings.zmq_curve and not endpoint.startswith(("ipc://", "inproc://")):
        raise ConfigError(
            "WORKSPACE_ZMQ_CURVE is on, so clients connect by CURVE: set WORKSPACE_ZMQ_CLIENT_KEY to a client key "
            "file (make one: workspaces keys new NAME)"
        )
    if client_keys is None and not is_local(endpoint):
        log.warning("connecting to %s without CURVE: the token travels unencrypted", endpoint)
    return Client(endpoint, read_token(settings), timeout_s=args.timeout, server_key=server_key,
                  client_keys=client_keys)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workspaces", description="Isolated Linux workspaces for AI agents.")
    parser.add_argument("--version", action="version", version=f"agent-workspaces {__version__}")
    for name, variable in (
        ("endpoint", "WORKSPACE_ZMQ_ENDPOINT"),
        ("events-endpoint", "WORKSPACE_ZMQ_EVENTS_ENDPOINT"),
    ):
        parser.add_argument(f"--{name}", help=f"{name.replace('-', ' ')} (default: {variable})")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a reply (default 120)")
    parser.add_argument("--log-level", default="INFO", help="log level for serve (default INFO)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="serve's log lines: text or json (one per line)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="run the runtime in the foreground (Ctrl-C stops it)")

    doctor = commands.add_parser("doctor", help="check Docker, gVisor, the image, the runtime; say how to fix")
    doctor.add_argument("--json", action="store_true")

    create = commands.add_parser("create", help="create a workspace and print its id")
    create.add_argument("--provider", help="gvisor, firecracker or e2b (default: WORKSPACE_DEFAULT_PROVIDER)")
    create.add_argument("--image")
    create.add_argument("--cpu", type=float)
    create.add_argument("--memory", help="e.g. 4G or 512M")
    create.add_argument("--disk", help="e.g. 10G")
    create.add_argument("--env", action="append", metavar="KEY=VALUE")
    create.add_argument("--label", action="append", metavar="KEY=VALUE")
    create.add_argument("--ttl", type=float, metavar="SECONDS", help="expire after this long (ephemeral only)")
    create.add_argument("--persistent", action="store_true", help="never expire")
    create.add_argument("--json", action="store_true", help="print the whole record as JSON")

    run = commands.add_parser(
        "exec",
        help="run a command in a workspace, printing its output as it comes; exits with its exit code",
        usage="workspaces exec [options] WORKSPACE_ID -- COMMAND [ARGS...]",
    )
    run.add_argument("workspace_id")
    run.add_argument("--shell", metavar="STRING", help="run STRING with sh -c instead")
    run.add_argument("--cwd")
    run.add_argument("--env", action="append", metavar="KEY=VALUE")
    run.add_argument("--exec-timeout", type=float, metavar="SECONDS", help="kill the command after this long")
    run.add_argument("--stdin", action="store_true", help="send this command's standard input")
    run.add_argument("--json", action="store_true")

    ls = commands.add_parser("ls", help="list workspaces (destroyed ones only with --state destroyed)")
    ls.add_argument("--label", action="append", metavar="KEY=VALUE")
    ls.add_argument("--state")

    get = commands.add_parser("get", help="show one workspace")
    get.add_argument("workspace_id")

    rm = commands.add_parser("rm", help="destroy workspaces")
    rm.add_argument("workspace_ids", nargs="+", metavar="workspace_id")

    providers = commands.add_parser("providers", help="provider health, runtime and workspaces")

    stats = commands.add_parser("stats", help="capacity, host resources, disk use and alerts")

    extend = commands.add_parser("extend", help="move a workspace's expiry to now + TTL")
    extend.add_argument("workspace_id")
    extend.add_argument("ttl", type=float, metavar="SECONDS")

    cp = commands.add_parser(
        "cp",
        help="copy a file into or out of a workspace (paths under /workspace)",
        usage="workspaces cp LOCAL|- WORKSPACE_ID:PATH  |  workspaces cp WORKSPACE_ID:PATH LOCAL|-",
    )
    cp.add_argument("source")
    cp.add_argument("target")
    cp.add_argument("--mode", type=lambda text: int(text, 8), help="file mode in octal, e.g. 755 (uploads)")
    for printed in (ls, get, providers, stats, extend):
        printed.add_argument("--json", action="store_true")
    add_github_parsers(commands)
    add_mcp_parsers(commands)
    add_keys_parsers(commands)
    add_firecracker_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``workspaces`` command; return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # For `exec`, everything after the first `--` is the command, verbatim; for the other
    # commands `--` keeps its usual meaning (the end of the options).
    command: list[str] = []
    if "--" in argv and "exec" in argv[: argv.index("--")]:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = _parser().parse_args(argv)
    args.cmd = command
    serving = args.command in ("serve", "firecracker-manager")
    configure(args.log_level.upper() if serving else logging.WARNING, args.log_format)
    if args.command == "doctor":
        return _doctor(args)
    try:
        settings = load_settings()
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "keys":
            return keys(settings, args)
        if args.command == "firecracker":
            return firecracker(settings, args)
        if args.command == "firecracker-manager":
            return firecracker_manager(settings, args)
        args.events_endpoint = args.events_endpoint or settings.zmq_events_endpoint
        with _client(settings, args) as client:
            return COMMANDS[args.command](client, args)
    except ConfigError as exc:
        print(f"workspaces: {exc.message}", file=sys.stderr)
        return 2
    except WorkspaceError as exc:
        print(f"workspaces: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
