"""One Firecracker process: started, its CPU capped, told apart from a reused pid, stopped.

Each VM is one ``firecracker`` process (under ``jailer`` when one is configured) in its own
session, so the VM outlives the process that started it: a runtime or manager killed with
``SIGKILL`` finds its VMs running when it comes back. A pid is only believed together
with the process's start time. The workspace's CPU (which may be a fraction of a core)
is enforced with the CPU controller of a cgroup per VM (``cpu.max`` in cgroup v2,
``cpu.cfs_quota_us`` in v1); vCPU threads are created at ``InstanceStart``, after the
process joined it, so they inherit it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from runtime.errors import ProviderUnavailable

__all__ = ["Cgroup", "alive", "launch", "process_start", "stop"]

_PERIOD_US = 100_000
_CGROUP_NAME = "agent-workspaces-vms"


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot); ``None`` if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    """Whether process ``pid`` is still the one that started at ``start``."""
    return pid > 0 and process_start(pid) == start


def launch(argv: list[str], cwd: Path, console: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, its output (the guest's serial console) to ``console``.

    Raises:
        ProviderUnavailable: The binary cannot be run.
    """
    with open(console, "ab") as output:
        try:
            return subprocess.Popen(
                argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise ProviderUnavailable(f"firecracker could not be started ({argv[0]}): {exc}") from None


def stop(pid: int, start: int, polite: Callable[[], None], grace_s: float) -> None:
    """End the process: ``polite`` first (``SendCtrlAltDel``), then ``SIGKILL`` after ``grace_s``."""
    if not alive(pid, start):
        return
    with contextlib.suppress(Exception):  # a VM that cannot be asked is killed
        polite()
    deadline = time.monotonic() + grace_s
    while alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.01)


class Cgroup:
    """The CPU controller's cgroup of one VM, when this host lets us make one.

    Args:
        workspace_id: Names the cgroup under ``agent-workspaces-vms``.
        root: The cgroup file system.
    """

    def __init__(self, workspace_id: str, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.path: Path | None = None
        self._v2 = False
        if (root / "cgroup.controllers").exists():
            self.path, self._v2 = root / _CGROUP_NAME / workspace_id, True
        elif (root / "cpu" / "cpu.cfs_quota_us").exists():
            self.path = root / "cpu" / _CGROUP_NAME / workspace_id
        elif (root / "unified" / "cgroup.controllers").exists():
            self.path, self._v2 = root / "unified" / _CGROUP_NAME / workspace_id, True

    def limit(self, pid: int, cores: float) -> bool:
        """Cap process ``pid`` (and the threads it makes later) at ``cores``; ``False`` if not possible."""
        if self.path is None:
            return False
        quota = max(1000, int(cores * _PERIOD_US))
        try:
            if self._v2:
                parent = self.path.parent
                parent.mkdir(exist_ok=True)
                if "cpu" not in (parent.parent / "cgroup.subtree_control").read_text().split():
                    (parent.parent / "cgroup.subtree_control").write_text("+cpu")
                if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
                    (parent / "cgroup.subtree_control").write_text("+cpu")
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                (self.path / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError:
            return False
        return True

    def remove(self) -> None:
        """Remove the cgroup (its process has ended); a missing one is fine."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
