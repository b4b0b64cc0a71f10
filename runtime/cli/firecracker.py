"""``workspaces firecracker``: build what a Firecracker guest boots.

``build-guest`` downloads Debian's cloud kernel and busybox and writes ``vmlinux`` and
``initrd.img`` (``make firecracker-guest``: by default into ``build/firecracker-guest/``,
where the provider looks when ``FIRECRACKER_KERNEL`` is empty); ``build-rootfs IMAGE``
turns a local Docker image into the cached ext4 root filesystem the provider would use
(``STATE_DIR/firecracker/rootfs``) and prints its path. Both skip work already done.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.cli.manager import add_parser as add_manager_parser
from runtime.config import Settings
from runtime.providers.firecracker.guest import DEFAULT_OUT, build_guest
from runtime.providers.firecracker.rootfs import Rootfs

__all__ = ["add_parsers", "firecracker"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``firecracker`` subcommands, and ``firecracker-manager``."""
    add_manager_parser(commands)
    parser = commands.add_parser("firecracker", help="build the Firecracker guest: build-guest, build-rootfs")
    actions = parser.add_subparsers(dest="action", required=True)
    guest = actions.add_parser(
        "build-guest", help="the guest kernel (vmlinux) and initrd from Debian's cloud kernel (needs apt)"
    )
    guest.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help=f"default: {DEFAULT_OUT}")
    guest.add_argument("--force", action="store_true", help="build even if DIR holds this kernel's outputs")
    rootfs = actions.add_parser(
        "build-rootfs", help="the ext4 root filesystem of a local Docker image; prints its path"
    )
    rootfs.add_argument("image", help="e.g. agent-workspaces/base:bookworm (must contain /usr/bin/python3)")
    rootfs.add_argument("--force", action="store_true", help="build again even if it is cached")


def firecracker(settings: Settings, args: argparse.Namespace) -> int:
    """``workspaces firecracker ACTION``."""
    if args.action == "build-guest":
        built = build_guest(args.out, force=args.force)
        verb = "built" if built.built else "up to date"
        print(f"{verb}: kernel {built.manifest['kernel_release']}, modules: {' '.join(built.manifest['modules'])}")
        print(f"FIRECRACKER_KERNEL={built.vmlinux.resolve()}")
        print(f"FIRECRACKER_INITRD={built.initrd.resolve()}")
        return 0
    cache = Rootfs(settings.state_dir / "firecracker" / "rootfs")
    path = cache.build(args.image) if args.force else cache.ensure(args.image)
    print(path)
    return 0
