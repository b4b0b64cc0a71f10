"""Register gVisor's runsc (and live-restore) in Docker's daemon.json; run by scripts/setup.sh.

Usage: python scripts/register_runsc.py DAEMON_JSON [PLATFORM]

Adds the ``runsc`` runtime unless one is registered already, and ``live-restore`` unless
set; every other key is kept. ``PLATFORM`` (``systrap``, ``ptrace`` or ``kvm``; empty:
runsc's default, systrap) becomes ``--platform=PLATFORM`` in the new registration (see
docs/gvisor.md, "What a command costs"). An existing registration is never changed.
Exit status 0 (also when nothing changed); 2 for a platform runsc does not have.
"""

from __future__ import annotations

import json
import os
import sys

PLATFORMS = ("systrap", "ptrace", "kvm")


def register(path: str, platform: str = "") -> bool:
    """Update ``path``; whether it changed."""
    config = {}
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path) as handle:
            config = json.load(handle)
    runtimes = config.setdefault("runtimes", {})
    changed = False
    if "runsc" not in runtimes:
        # runsc's own network stack refuses to start on this kind of kernel ("cannot run
        # with network enabled in root network namespace"); --network=host runs it inside
        # the container's network namespace instead (see docs/gvisor.md).
        args = ["--network=host"] + ([f"--platform={platform}"] if platform else [])
        runtimes["runsc"] = {"path": "/usr/bin/runsc", "runtimeArgs": args}
        changed = True
    if "live-restore" not in config:
        # Workspaces keep running while dockerd restarts or is upgraded (docs/crash-safety.md).
        config["live-restore"] = True
        changed = True
    if changed:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".tmp", "w") as handle:
            json.dump(config, handle, indent=2)
            handle.write("\n")
        os.replace(path + ".tmp", path)
    return changed


def main(argv: list[str]) -> int:
    """Register; see the module docstring."""
    path, platform = argv[0], (argv[1] if len(argv) > 1 else "")
    if platform and platform not in PLATFORMS:
        print(f"RUNSC_PLATFORM={platform!r} is not a runsc platform ({', '.join(PLATFORMS)})", file=sys.stderr)
        return 2
    if register(path, platform):
        print(f"registered runsc and live-restore in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
