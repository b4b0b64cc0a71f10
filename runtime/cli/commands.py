"""The CLI's client commands: one function per subcommand, each given a connected ``Client``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

from runtime.cli import github, mcp
from runtime.cli.tables import age, pairs, pct, print_json, records_table, size, states, table
from runtime.errors import ConfigError, ProviderUnavailable
from runtime.messages import ProcessInfo, ProcessOutput, Truncated, exec_topic_prefix
from runtime.wire import Client, Subscriber, follow

__all__ = ["COMMANDS"]


def _create(client: Client, args: argparse.Namespace) -> int:
    record = client.create(
        provider=args.provider,
        image=args.image,
        cpu=args.cpu,
        memory=args.memory,
        disk=args.disk,
        env=pairs(args.env, "env"),
        labels=pairs(args.label, "label"),
        ttl_seconds=args.ttl,
        persistent=args.persistent or None,
    )
    if args.json:
        print_json(record)
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
    env = pairs(args.env, "env")
    if not args.json:
        with client.subscribe(args.events_endpoint, (exec_topic_prefix(args.workspace_id),)) as events:
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
        print_json(result)
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
    records = client.list(labels=pairs(args.label, "label"), state=args.state)
    if args.json:
        print_json(records)
    else:
        print(records_table(records))
    return 0


def _get(client: Client, args: argparse.Namespace) -> int:
    record = client.get(args.workspace_id)
    if args.json:
        print_json(record)
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
        print_json(statuses)
        return 0
    now = time.time()
    rows = [["NAME", "HEALTHY", "RUNTIME", "WORKSPACES", "CHECKED", "DETAIL"]]
    for status in statuses:
        healthy = "yes" if status.healthy else "NO"
        checked = age(status.checked_at, now)
        rows.append([status.name, healthy, status.runtime, str(status.workspaces), checked, status.detail])
    print(table(rows))
    return 0


def _stats(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats()
    if args.json:
        print_json(stats)
        return 0
    host, capacity, pool = stats["host"], stats["capacity"], stats["pool"]
    print(f"workspaces  {stats['workspaces']} active of {capacity['limit']}  ({states(stats['by_state'])})")
    print(f"host        cpu {pct(host['cpu_pct'])}  memory {pct(host['mem_pct'])}  disk {pct(host['disk_pct'])}")
    if "reserved_cpu" in host:
        print(f"reserved    {host['reserved_cpu']:g} CPUs ({pct(host['reserved_cpu_pct'])} of {host['cpus']}), "
              f"{size(host['reserved_memory_bytes'])} memory ({pct(host['reserved_memory_pct'])})")  # fmt: skip
    print(f"pool        {pool['size']} of {pool['target']} warm, {pool['claims']} claims, {pool['misses']} misses")
    for workspace_id, usage in sorted(stats["usage"].items()):
        disk = usage.get("disk_used_bytes")
        disk_text = "-" if disk is None else f"{size(disk)} of {size(usage['disk_bytes'])}"
        cpu, memory = pct(usage.get("cpu_pct")), pct(usage.get("memory_pct"))
        print(f"usage       {workspace_id}  cpu {cpu}  memory {memory}  disk {disk_text}")
    alerts = stats["alerts"]
    print(f"alerts      {len(alerts) or 'none'}")
    for alert in alerts:
        print(f"  {alert['key']}: {alert['message']}")
    return 0


def _extend(client: Client, args: argparse.Namespace) -> int:
    record = client.extend(args.workspace_id, args.ttl)
    if args.json:
        print_json(record)
    else:
        print(f"{record.id} expires {age(record.expires_at, time.time())}")
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


COMMANDS = {
    "create": _create,
    "exec": _exec,
    "ls": _ls,
    "get": _get,
    "rm": _rm,
    "providers": _providers,
    "stats": _stats,
    "extend": _extend,
    "cp": _cp,
    "github": github.github,
    "git": github.git,
    "mcp": mcp.mcp,
}
