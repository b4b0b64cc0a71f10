"""The ``workspaces`` command: ``serve`` the runtime, or drive one as a client.

Client commands read the endpoint and token the same way the server does (environment,
then ``WORKSPACE_CONFIG``, then defaults; the token from ``WORKSPACE_AUTH_TOKEN`` or
``STATE_DIR/token``), print tables for humans and ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from runtime.app import Runtime
from runtime.auth import read_token
from runtime.client import Client, Subscriber
from runtime.config import Settings, load_settings
from runtime.doctor import run_checks
from runtime.errors import ConfigError, ProviderUnavailable, WorkspaceError
from runtime.logs import configure
from runtime.messages import WorkspaceRecord
from runtime.processes import ProcessInfo, ProcessOutput
from runtime.streams import Truncated, exec_topic_prefix, follow
from runtime.version import __version__

__all__ = ["main"]

log = logging.getLogger("runtime.cli")


def _pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    result = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--{what} {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


def _size(value: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return str(value)


def _age(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    seconds = timestamp - now
    sign = "in " if seconds > 0 else ""
    suffix = "" if seconds > 0 else " ago"
    seconds = abs(seconds)
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale:
            return f"{sign}{seconds / scale:.0f}{unit}{suffix}"
    return f"{sign}{seconds:.0f}s{suffix}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _records_table(records: list[WorkspaceRecord]) -> str:
    now = time.time()
    rows = [["ID", "STATE", "PROVIDER", "RUNTIME", "CPU", "MEMORY", "CREATED", "EXPIRES", "LABELS"]]
    for record in records:
        labels = ",".join(f"{key}={value}" for key, value in sorted(record.labels.items()))
        rows.append(
            [
                record.id,
                record.state,
                record.provider,
                record.runtime,
                f"{record.cpu:g}",
                _size(record.memory_bytes),
                _age(record.created_at, now),
                _age(record.expires_at, now),
                labels,
            ]
        )
    return _table(rows)


def _print_json(value: Any) -> None:
    print(json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=True))


# ---------------------------------------------------------------------- commands


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
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
        _print_json(checks)
    else:
        for check in checks:
            print(f"{check.status:5} {check.name:18} {check.detail}")
            if check.fix:
                print(f"{'':24} fix: {check.fix}")
    return 1 if any(check.status == "FAIL" for check in checks) else 0


def _client(settings: Settings, args: argparse.Namespace) -> Client:
    return Client(args.endpoint or settings.zmq_endpoint, read_token(settings), timeout_s=args.timeout)


def _create(client: Client, args: argparse.Namespace) -> int:
    record = client.create(
        provider=args.provider,
        image=args.image,
        cpu=args.cpu,
        memory=args.memory,
        disk=args.disk,
        env=_pairs(args.env, "env"),
        labels=_pairs(args.label, "label"),
        ttl_seconds=args.ttl,
        persistent=args.persistent or None,
    )
    if args.json:
        _print_json(record)
    else:
        print(record.id)
    return 0


def _exec(client: Client, args: argparse.Namespace) -> int:
    if args.shell is not None and args.cmd:
        raise ConfigError("give either --shell STRING or a command after --, not both")
    cmd: list[str] | str = args.shell if args.shell is not None else list(args.cmd)
    if not cmd:
        raise ConfigError("no command: use `workspaces exec ID -- COMMAND [ARGS...]` or --shell STRING")
    stdin = sys.stdin.buffer.read() if args.stdin else None
    env = _pairs(args.env, "env")
    if not args.json:
        with Subscriber(args.events_endpoint, (exec_topic_prefix(args.workspace_id),)) as events:
            try:
                process = client.spawn(
                    args.workspace_id, cmd, cwd=args.cwd, env=env, stdin=stdin, timeout_s=args.exec_timeout
                )
            except ProviderUnavailable:
                pass  # no agent in this workspace (e.g. no python3 in its image): run it whole below
            else:
                return _stream(client, events, process, args.exec_timeout)
    result = client.exec(args.workspace_id, cmd, cwd=args.cwd, env=env, stdin=stdin, timeout_s=args.exec_timeout)
    if args.json:
        _print_json(result)
        return 0
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    if result.timed_out:
        sys.stderr.write(f"workspaces: command timed out after {args.exec_timeout:g} s\n")
    return result.exit_code if 0 <= result.exit_code <= 255 else 1


def _stream(client: Client, events: Subscriber, process: ProcessInfo, timeout_s: float | None) -> int:
    """Print a streamed process's output as it comes; return its exit code (Ctrl-C kills it)."""
    try:
        for event in follow(client, events, process):
            if isinstance(event, ProcessOutput):
                out = sys.stdout.buffer if event.stream == "stdout" else sys.stderr.buffer
                out.write(event.data)
                out.flush()
            elif isinstance(event, Truncated):
                sys.stderr.write(f"workspaces: {event.missed} output chunk(s) were lost: this reader fell behind\n")
            else:
                if event.timed_out:
                    sys.stderr.write(f"workspaces: command timed out after {timeout_s:g} s\n")
                if event.exit_code is None:
                    sys.stderr.write(f"workspaces: {event.error}\n")
                    return 1
                return event.exit_code if 0 <= event.exit_code <= 255 else 1
    except KeyboardInterrupt:
        client.exec_kill(process.workspace_id, process.process_id, "KILL")
        return 130
    return 1


def _ls(client: Client, args: argparse.Namespace) -> int:
    records = client.list(labels=_pairs(args.label, "label"), state=args.state)
    if args.json:
        _print_json(records)
    else:
        print(_records_table(records))
    return 0


def _get(client: Client, args: argparse.Namespace) -> int:
    record = client.get(args.workspace_id)
    if args.json:
        _print_json(record)
    else:
        for key, value in msgspec.structs.asdict(record).items():
            print(f"{key + ':':14} {value}")
    return 0


def _rm(client: Client, args: argparse.Namespace) -> int:
    for workspace_id in args.workspace_ids:
        client.destroy(workspace_id)
        print(workspace_id)
    return 0


def _providers(client: Client, args: argparse.Namespace) -> int:
    statuses = client.providers()
    if args.json:
        _print_json(statuses)
        return 0
    now = time.time()
    rows = [["NAME", "HEALTHY", "RUNTIME", "WORKSPACES", "CHECKED", "DETAIL"]]
    for status in statuses:
        healthy = "yes" if status.healthy else "NO"
        checked = _age(status.checked_at, now)
        rows.append([status.name, healthy, status.runtime, str(status.workspaces), checked, status.detail])
    print(_table(rows))
    return 0


def _stats(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats()
    if args.json:
        _print_json(stats)
        return 0
    host, capacity, pool = stats["host"], stats["capacity"], stats["pool"]
    print(f"workspaces  {stats['workspaces']} active of {capacity['limit']}  ({_states(stats['by_state'])})")
    print(f"host        cpu {_pct(host['cpu_pct'])}  memory {_pct(host['mem_pct'])}  disk {_pct(host['disk_pct'])}")
    if "reserved_cpu" in host:
        print(f"reserved    {host['reserved_cpu']:g} CPUs ({_pct(host['reserved_cpu_pct'])} of {host['cpus']}), "
              f"{_size(host['reserved_memory_bytes'])} memory ({_pct(host['reserved_memory_pct'])})")  # fmt: skip
    print(f"pool        {pool['size']} of {pool['target']} warm, {pool['claims']} claims, {pool['misses']} misses")
    for workspace_id, usage in sorted(stats["usage"].items()):
        disk = usage.get("disk_used_bytes")
        disk_text = "-" if disk is None else f"{_size(disk)} of {_size(usage['disk_bytes'])}"
        cpu, memory = _pct(usage.get("cpu_pct")), _pct(usage.get("memory_pct"))
        print(f"usage       {workspace_id}  cpu {cpu}  memory {memory}  disk {disk_text}")
    alerts = stats["alerts"]
    print(f"alerts      {len(alerts) or 'none'}")
    for alert in alerts:
        print(f"  {alert['key']}: {alert['message']}")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _states(by_state: dict[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(by_state.items())) or "none"


def _extend(client: Client, args: argparse.Namespace) -> int:
    record = client.extend(args.workspace_id, args.ttl)
    if args.json:
        _print_json(record)
    else:
        print(f"{record.id} expires {_age(record.expires_at, time.time())}")
    return 0


def _remote(spec: str) -> tuple[str, str] | None:
    workspace_id, sep, path = spec.partition(":")
    return (workspace_id, path) if sep and workspace_id.startswith("ws_") else None


def _cp(client: Client, args: argparse.Namespace) -> int:
    source, target = _remote(args.source), _remote(args.target)
    if (source is None) == (target is None):
        raise ConfigError("cp copies between this machine and a workspace: one side must be WORKSPACE_ID:PATH")
    if target is not None:
        data = sys.stdin.buffer.read() if args.source == "-" else Path(args.source).read_bytes()
        client.write_file(target[0], target[1], data, mode=args.mode)
        return 0
    assert source is not None
    data = client.read_file(source[0], source[1])
    if args.target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(args.target).write_bytes(data)
    return 0


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
    ls.add_argument("--json", action="store_true")

    get = commands.add_parser("get", help="show one workspace")
    get.add_argument("workspace_id")
    get.add_argument("--json", action="store_true")

    rm = commands.add_parser("rm", help="destroy workspaces")
    rm.add_argument("workspace_ids", nargs="+", metavar="workspace_id")

    providers = commands.add_parser("providers", help="provider health, runtime and workspaces")
    providers.add_argument("--json", action="store_true")

    stats = commands.add_parser("stats", help="capacity, host resources, disk use and alerts")
    stats.add_argument("--json", action="store_true")

    extend = commands.add_parser("extend", help="move a workspace's expiry to now + TTL")
    extend.add_argument("workspace_id")
    extend.add_argument("ttl", type=float, metavar="SECONDS")
    extend.add_argument("--json", action="store_true")

    cp = commands.add_parser(
        "cp",
        help="copy a file into or out of a workspace (paths under /workspace)",
        usage="workspaces cp LOCAL|- WORKSPACE_ID:PATH  |  workspaces cp WORKSPACE_ID:PATH LOCAL|-",
    )
    cp.add_argument("source")
    cp.add_argument("target")
    cp.add_argument("--mode", type=lambda text: int(text, 8), help="file mode in octal, e.g. 755 (uploads)")
    return parser


_COMMANDS = {
    "create": _create,
    "exec": _exec,
    "ls": _ls,
    "get": _get,
    "rm": _rm,
    "providers": _providers,
    "stats": _stats,
    "extend": _extend,
    "cp": _cp,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``workspaces`` command; return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the command for `exec`, verbatim.
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    args = _parser().parse_args(argv)
    args.cmd = command
    configure(args.log_level.upper() if args.command == "serve" else logging.WARNING, args.log_format)
    if args.command == "doctor":
        return _doctor(args)
    try:
        settings = load_settings()
        if args.command == "serve":
            return _serve(settings, args)
        args.events_endpoint = args.events_endpoint or settings.zmq_events_endpoint
        with _client(settings, args) as client:
            return _COMMANDS[args.command](client, args)
    except ConfigError as exc:
        print(f"workspaces: {exc.message}", file=sys.stderr)
        return 2
    except WorkspaceError as exc:
        print(f"workspaces: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
