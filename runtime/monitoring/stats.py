"""The ``stats`` op: workspaces, pool, host resources, alerts and per-workspace usage."""

from __future__ import annotations

from typing import Any

import msgspec
import psutil

from runtime.config import Settings
from runtime.messages import ACTIVE_STATES
from runtime.monitoring.boards import Boards
from runtime.monitoring.sampler import disk_pct
from runtime.state.statelog import StateLog

__all__ = ["snapshot"]


def _pool(boards: Boards) -> dict[str, int]:
    """Every provider's pool, summed (sizes, target and counters)."""
    total = {"size": 0, "target": 0, "booting": 0, "claims": 0, "misses": 0, "refill_failures": 0, "evictions": 0}
    for pool in boards.pools.values():
        for key, value in msgspec.structs.asdict(pool.stats()).items():
            total[key] += value
    return total


def snapshot(statelog: StateLog, boards: Boards, settings: Settings) -> dict[str, Any]:
    """Everything ``stats`` reports, read from the boards (no backend calls).

    ``workspaces`` and ``by_state`` count requested workspaces; pool members are in
    ``pool``; ``capacity.active`` counts both, as ``WORKSPACE_MAX_CONCURRENT`` does.
    """
    by_state: dict[str, int] = {}
    for entry in statelog.workspaces():
        if not entry.pooled:
            by_state[entry.record.state] = by_state.get(entry.record.state, 0) + 1
    data_root = boards.providers.data_root()
    sample = boards.samples.latest()
    sampler: dict[str, float | None]
    if sample is not None:
        host: dict[str, Any] = msgspec.to_builtins(sample.host)
        sampler = {"interval_s": settings.sample_interval_s, "sampled_at": sample.sampled_at,
                   "took_ms": sample.took_ms}  # fmt: skip
    else:  # before the first sample
        host = {
            "cpu_pct": None,  # a rate: known from the second reading on
            "mem_pct": psutil.virtual_memory().percent,
            "disk_pct": disk_pct(data_root or str(settings.state_dir)),
        }
        sampler = {"interval_s": settings.sample_interval_s, "sampled_at": None, "took_ms": None}
    return {
        "workspaces": sum(count for state, count in by_state.items() if state in ACTIVE_STATES),
        "by_state": by_state,
        "capacity": {"active": boards.admission.count(), "limit": boards.admission.limit},
        "pool": _pool(boards),
        "reaper": boards.sweeps.as_dict(),
        "host": host,
        "sampler": sampler,
        "alerts": [msgspec.to_builtins(alert) for alert in boards.alerts.active()],
        "usage": {workspace_id: msgspec.to_builtins(usage) for workspace_id, usage in boards.usage.all().items()},
    }
