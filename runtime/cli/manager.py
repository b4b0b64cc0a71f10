"""``workspaces firecracker-manager``: own this host's microVMs and serve them to the runtime.

Runs as root (KVM, taps, NAT, cgroups) in the foreground until ``SIGINT``/``SIGTERM``;
the VMs keep running when it stops, and it finds them again when it starts. The runtime
reaches it through ``FIRECRACKER_MANAGER_SOCKET`` (the same variable names the socket
here; ``--socket`` overrides it), so the runtime itself need not be root.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from runtime.cli.signals import stop_on_signals
from runtime.config import Settings
from runtime.errors import ConfigError
from runtime.providers.firecracker import ManagerServer, local_machines

__all__ = ["DEFAULT_SOCKET", "add_parser", "firecracker_manager"]

log = logging.getLogger("runtime.cli")

DEFAULT_SOCKET = Path("/run/agent-workspaces/firecracker.sock")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``firecracker-manager`` command."""
    parser = commands.add_parser(
        "firecracker-manager", help="own this host's Firecracker microVMs (root) and serve them to the runtime"
    )
    parser.add_argument(
        "--socket", type=Path, help=f"where to listen (default: FIRECRACKER_MANAGER_SOCKET, else {DEFAULT_SOCKET})"
    )
    parser.add_argument("--group", help="the group allowed to use the socket (default: root only)")


def firecracker_manager(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until a signal; the VMs outlive it."""
    path = args.socket or (Path(settings.firecracker_manager_socket) if settings.firecracker_manager_socket else None)
    path = path or DEFAULT_SOCKET
    began = time.monotonic()
    machines = local_machines(settings)
    problems = machines.probe()
    for problem in problems:
        log.warning("firecracker is not usable yet: %s", problem)
    if not problems:
        machines.start()
    try:
        server = ManagerServer(path, machines, args.group).start()
    except KeyError:
        raise ConfigError(f"--group {args.group}: no such group") from None
    stop = stop_on_signals(" (the VMs keep running)")
    log.info(
        "firecracker manager ready in %.0f ms: serving on %s (VMs under %s)",
        (time.monotonic() - began) * 1000,
        path,
        machines.data_dir,
    )
    stop.wait()
    server.stop()
    return 0
