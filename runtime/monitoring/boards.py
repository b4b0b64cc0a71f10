"""The boards: what the runtime knows right now, written by its actors, read by anyone.

Each board is thread-safe and cheap to read, so ``stats``, the metrics endpoint and the
request routing read them without asking an actor: the latest provider health, each
workspace's latest usage, the latest sample, what the reaper did, the active alerts,
the warm pools and the capacity slots. ``Boards`` holds one of each for a runtime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from runtime.capacity.admission import Admission
from runtime.capacity.pool import Pool
from runtime.messages import ProviderStatus
from runtime.monitoring.alerts import AlertBoard
from runtime.monitoring.sampler import Sample

__all__ = ["Boards", "ProviderBoard", "SampleBoard", "Sweeps", "Usage", "UsageBoard"]


class ProviderBoard:
    """The latest status of every provider, written by ProviderActors, read by anyone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: dict[str, ProviderStatus] = {}

    def update(self, status: ProviderStatus) -> bool:
        """Record ``status``; return whether health or detail changed."""
        with self._lock:
            previous = self._statuses.get(status.name)
            self._statuses[status.name] = status
        return previous is None or (previous.healthy, previous.detail) != (status.healthy, status.detail)

    def get(self, name: str) -> ProviderStatus | None:
        """The latest status of ``name``, if it was ever checked."""
        with self._lock:
            return self._statuses.get(name)

    def healthy(self, name: str) -> bool:
        """Whether ``name``'s last check passed (``False`` before its first)."""
        status = self.get(name)
        return status is not None and status.healthy

    def data_root(self) -> str:
        """Where a provider keeps its data on this host (Docker's data root), if one says."""
        return next((status.data_root for status in self.all() if status.data_root), "")

    def all(self) -> list[ProviderStatus]:
        """Every provider's latest status, by name."""
        with self._lock:
            return sorted(self._statuses.values(), key=lambda status: status.name)


class Usage(msgspec.Struct, frozen=True):
    """One workspace's latest measurements; each field is ``None`` until measured.

    Disk is measured by the provider's health check, CPU and memory by the sampler.
    ``cpu_pct`` and ``memory_pct`` are percentages of the workspace's own limits.
    """

    disk_used_bytes: int | None = None
    disk_bytes: int | None = None
    cpu_pct: float | None = None
    memory_bytes: int | None = None
    memory_pct: float | None = None
    measured_at: float = 0.0


class UsageBoard:
    """Latest usage by workspace id, written by measurers, read by anyone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage: dict[str, Usage] = {}

    def update(self, workspace_id: str, **measured: float | int | None) -> None:
        """Record new measurements of a workspace, keeping the others."""
        with self._lock:
            current = self._usage.get(workspace_id) or Usage()
            self._usage[workspace_id] = msgspec.structs.replace(current, measured_at=time.time(), **measured)

    def get(self, workspace_id: str) -> Usage | None:
        """The latest measurement of a workspace, if any."""
        with self._lock:
            return self._usage.get(workspace_id)

    def forget(self, workspace_id: str) -> None:
        """Drop a workspace that ended."""
        with self._lock:
            self._usage.pop(workspace_id, None)

    def all(self) -> dict[str, Usage]:
        """Every workspace's latest measurement."""
        with self._lock:
            return dict(self._usage)


class SampleBoard:
    """The latest sample, written by the SamplerActor, read by ``stats`` and the metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Sample | None = None

    def set(self, sample: Sample) -> None:
        """Record the newest sample."""
        with self._lock:
            self._latest = sample

    def latest(self) -> Sample | None:
        """The newest sample, if one was taken."""
        with self._lock:
            return self._latest


class Sweeps:
    """What the reaper did, for ``stats``: last sweep, workspaces reaped, orphans removed."""

    def __init__(self, interval_s: float) -> None:
        self._lock = threading.Lock()
        self.interval_s = interval_s
        self.last_sweep_at: float | None = None
        self.sweeps = 0
        self.reaped = 0
        self.orphans = 0

    def swept(self, reaped: int) -> None:
        """A sweep ended, having sent ``reaped`` expired workspaces to be destroyed."""
        with self._lock:
            self.last_sweep_at = time.time()
            self.sweeps += 1
            self.reaped += reaped

    def orphan_removed(self) -> None:
        """An orphan container or volume was removed."""
        with self._lock:
            self.orphans += 1

    def as_dict(self) -> dict[str, float | int | None]:
        """The counters as plain data."""
        with self._lock:
            return {
                "interval_s": self.interval_s,
                "last_sweep_at": self.last_sweep_at,
                "sweeps": self.sweeps,
                "reaped": self.reaped,
                "orphans": self.orphans,
            }


@dataclass(frozen=True)
class Boards:
    """Every board of one runtime.

    Attributes:
        admission: The ``WORKSPACE_MAX_CONCURRENT`` slots.
        pools: The warm pool of each provider that keeps one.
        providers: The latest provider health.
        usage: The latest per-workspace measurements.
        alerts: The active alerts.
        samples: The sampler's latest measurements.
        sweeps: What the reaper did.
    """

    admission: Admission
    pools: Mapping[str, Pool] = field(default_factory=dict)
    providers: ProviderBoard = field(default_factory=ProviderBoard)
    usage: UsageBoard = field(default_factory=UsageBoard)
    alerts: AlertBoard = field(default_factory=AlertBoard)
    samples: SampleBoard = field(default_factory=SampleBoard)
    sweeps: Sweeps = field(default_factory=lambda: Sweeps(3600.0))
