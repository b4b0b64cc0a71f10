"""CPU time and memory of a container, read from its cgroup on the host (v1 or v2).

Reading two or three small files per workspace costs microseconds, where Docker's
stats API takes a second or more per container. The cgroup is found once from the
container's main process (``/proc/<pid>/cgroup``); under gVisor that is the sandbox,
whose memory is what the workspace's limit applies to.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from runtime.messages import ResourceUsage

__all__ = ["CgroupFiles", "find_cgroup", "read_usage"]

_ROOT = Path("/sys/fs/cgroup")


class CgroupFiles(msgspec.Struct, frozen=True):
    """Where one container's counters are."""

    cpu: str
    cpu_v2: bool
    memory: str
    memory_stat: str


def find_cgroup(pid: int, root: Path = _ROOT) -> CgroupFiles | None:
    """The counter files of the cgroup process ``pid`` is in, or ``None`` if unreadable."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path.lstrip("/")
    if "memory" in paths and "cpuacct" in paths:  # cgroup v1
        cpu_dir = next(
            (root / mount / paths["cpuacct"] for mount in ("cpuacct", "cpu,cpuacct") if (root / mount).is_dir()), None
        )
        if cpu_dir is None:
            return None
        memory_dir = root / "memory" / paths["memory"]
        return CgroupFiles(
            cpu=str(cpu_dir / "cpuacct.usage"),
            cpu_v2=False,
            memory=str(memory_dir / "memory.usage_in_bytes"),
            memory_stat=str(memory_dir / "memory.stat"),
        )
    if "" in paths:  # cgroup v2: one unified hierarchy
        unified = root / paths[""]
        return CgroupFiles(
            cpu=str(unified / "cpu.stat"),
            cpu_v2=True,
            memory=str(unified / "memory.current"),
            memory_stat=str(unified / "memory.stat"),
        )
    return None


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _stat(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def read_usage(files: CgroupFiles) -> ResourceUsage:
    """Read the counters now.

    Raises:
        OSError: The cgroup is gone (the container stopped).
    """
    if files.cpu_v2:
        cpu_seconds = _stat(_read(files.cpu), "usage_usec") / 1e6
        inactive_key = "inactive_file"
    else:
        cpu_seconds = int(_read(files.cpu)) / 1e9
        inactive_key = "total_inactive_file"
    memory = int(_read(files.memory))
    inactive = _stat(_read(files.memory_stat), inactive_key)
    return ResourceUsage(cpu_seconds=cpu_seconds, memory_bytes=max(0, memory - inactive))
