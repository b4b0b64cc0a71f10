"""What the sampler measures: the host, and each workspace against its own limits.

``Sampler.sample`` is blocking and cheap: psutil for the host (CPU since the previous
sample, memory, disk of Docker's data root), one ``resource_usage`` call per provider
for the workspaces (cgroup counters, not a stats call per container), and the
resources workspaces reserve (the sum of their limits, pool members included) against
the host's. One sample is taken at a time; CPU percentages come from the difference
with the previous one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import msgspec
import psutil

from runtime.messages import ACTIVE_STATES, StoredWorkspace
from runtime.providers.base import Provider

__all__ = ["HostSample", "Sample", "Sampler", "WorkspaceSample", "disk_pct"]


class HostSample(msgspec.Struct, frozen=True):
    """The host, and what the workspaces reserve of it (percentages of the host's totals)."""

    cpu_pct: float
    mem_pct: float
    disk_pct: float | None
    cpus: int
    memory_bytes: int
    reserved_cpu: float
    reserved_cpu_pct: float
    reserved_memory_bytes: int
    reserved_memory_pct: float


class WorkspaceSample(msgspec.Struct, frozen=True):
    """One workspace: CPU as a percentage of its CPU limit, memory of its memory limit."""

    workspace_id: str
    cpu_pct: float | None
    memory_bytes: int
    memory_pct: float


class Sample(msgspec.Struct, frozen=True):
    """One round of measurements."""

    host: HostSample
    workspaces: list[WorkspaceSample]
    sampled_at: float
    took_ms: float


class Sampler:
    """Takes samples, remembering the CPU counters of the previous one."""

    def __init__(self) -> None:
        self._cpu: dict[str, tuple[float, float]] = {}  # workspace id -> (monotonic, cpu seconds)
        psutil.cpu_percent(interval=None)  # primes the host counter

    def sample(self, entries: Iterable[StoredWorkspace], providers: Mapping[str, Provider], data_root: str) -> Sample:
        """Measure now. ``entries`` are the state log's workspaces; ``data_root`` Docker's."""
        began = time.monotonic()
        ready: dict[str, list[StoredWorkspace]] = {}
        reserved_cpu, reserved_memory = 0.0, 0
        for entry in entries:
            record = entry.record
            if record.state in ACTIVE_STATES:
                reserved_cpu += record.cpu
                reserved_memory += record.memory_bytes
            if record.state == "ready" and entry.handle and record.provider in providers:
                ready.setdefault(record.provider, []).append(entry)
        workspaces = []
        for name, members in ready.items():
            usage = providers[name].resource_usage([entry.handle for entry in members])
            now = time.monotonic()
            for entry in members:
                measured = usage.get(entry.handle)
                if measured is not None:
                    workspaces.append(self._workspace(entry, measured.cpu_seconds, measured.memory_bytes, now))
        measured_ids = {sample.workspace_id for sample in workspaces}
        for gone in set(self._cpu) - measured_ids:
            del self._cpu[gone]
        cpus = psutil.cpu_count() or 1
        memory = psutil.virtual_memory()
        host = HostSample(
            cpu_pct=psutil.cpu_percent(interval=None),
            mem_pct=memory.percent,
            disk_pct=disk_pct(data_root),
            cpus=cpus,
            memory_bytes=memory.total,
            reserved_cpu=reserved_cpu,
            reserved_cpu_pct=100.0 * reserved_cpu / cpus,
            reserved_memory_bytes=reserved_memory,
            reserved_memory_pct=100.0 * reserved_memory / memory.total,
        )
        return Sample(host, workspaces, time.time(), (time.monotonic() - began) * 1000)

    def _workspace(self, entry: StoredWorkspace, cpu_seconds: float, memory_bytes: int, now: float) -> WorkspaceSample:
        record = entry.record
        previous = self._cpu.get(record.id)
        self._cpu[record.id] = (now, cpu_seconds)
        cpu_pct = None
        if previous is not None and now > previous[0] and record.cpu > 0:
            cpu_pct = 100.0 * max(0.0, cpu_seconds - previous[1]) / (now - previous[0]) / record.cpu
        return WorkspaceSample(
            workspace_id=record.id,
            cpu_pct=cpu_pct,
            memory_bytes=memory_bytes,
            memory_pct=100.0 * memory_bytes / record.memory_bytes if record.memory_bytes else 0.0,
        )


def disk_pct(path: str) -> float | None:
    """How full the filesystem holding ``path`` is, in percent (``None``: no path, or unreadable)."""
    if not path:
        return None
    try:
        return float(psutil.disk_usage(path).percent)
    except OSError:
        return None
