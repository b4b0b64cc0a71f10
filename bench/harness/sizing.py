"""Host sizing: how many default (2 CPU/4G) and small (256M) workspaces a host holds, from the scale run.

Limits are ceilings, not allocations: an idle workspace costs the host only its
footprint (gVisor's sandbox and gofer, the shim, the agent), which the scale run
measures as host memory in use over the workspaces held. So each shape gets a range:

- **guaranteed**: every workspace may use its whole limits at once with no
  overcommit: ``min(cpus / cpu, usable / memory)``; for the default shape this is the
  binding case (agents compiling or running tests);
- **memory limits honoured**: CPU shared (agents wait on the model most of the time),
  memory never overcommitted: ``usable / memory``;
- **idle footprint** (small only): an upper bound for workspaces that mostly sit idle,
  the lower of ``usable / measured memory footprint`` (host memory in use over the
  workspaces held) and the count whose measured idle CPU (read from the workspaces'
  cgroups: gVisor's sandbox keeps a little busy even when idle) would take
  ``IDLE_CPU_SHARE`` of the cores; and only while the runtime itself keeps up (the scale run's ``ping`` p99
  and CPU say whether it did).

``usable`` is the memory left after ``RESERVE`` for the host, Docker and the runtime
(the larger of 2 GiB and 10%). The same rules are applied to the seed's two machines
so the estimate can be set beside the seed's table.
"""

from __future__ import annotations

import math
from typing import Any

from bench.harness.results import ScalePoint, percentile

__all__ = ["DEFAULT_SHAPE", "IDLE_CPU_SHARE", "SEED", "SMALL_SHAPE", "estimate", "host_sizing", "usable"]

GiB = 1 << 30
IDLE_CPU_SHARE = 0.5
DEFAULT_SHAPE = (2.0, 4 * GiB)
SMALL_SHAPE = (0.25, 256 << 20)
SEED: tuple[dict[str, Any], ...] = (
    {"machine": "8 CPU / 32 GB", "cpus": 8, "memory_bytes": 32 * GiB, "seed_default": "1-5"},
    {"machine": "32 CPU / 128 GB", "cpus": 32, "memory_bytes": 128 * GiB, "seed_default": "10-20"},
)


def usable(memory_bytes: int) -> int:
    """Memory left for workspaces after the host's reserve."""
    return memory_bytes - max(2 * GiB, memory_bytes // 10)


def estimate(cpus: float, memory_bytes: int, footprint_bytes: float | None, idle_cores: float = 0.0) -> dict[str, Any]:
    """The ranges for one machine, from a workspace's measured idle memory footprint and idle host CPU (cores)."""
    room = usable(memory_bytes)
    default_cpu, default_memory = DEFAULT_SHAPE
    small_cpu, small_memory = SMALL_SHAPE
    by_memory = int(room // footprint_bytes) if footprint_bytes else None
    by_cpu = math.floor(IDLE_CPU_SHARE * cpus / idle_cores + 1e-9) if idle_cores > 0 else None
    bounds = [bound for bound in (by_memory, by_cpu) if bound is not None]
    return {
        "default_guaranteed": int(min(cpus // default_cpu, room // default_memory)),
        "default_memory_bound": int(room // default_memory),
        "small_guaranteed": int(min(cpus // small_cpu, room // small_memory)),
        "small_memory_bound": int(room // small_memory),
        "small_idle_memory_bound": by_memory,
        "small_idle_cpu_bound": by_cpu,
        "small_idle_footprint_bound": min(bounds) if bounds else None,
    }


def host_sizing(machine: dict[str, Any], points: list[ScalePoint]) -> dict[str, Any]:
    """The sizing section of the report: this host, the seed's machines, and what the scale run showed."""
    if len(points) < 2 or points[-1].count == 0:
        return {"measured": False, "why": "the scale scenario did not run"}
    first, last = points[0], points[-1]
    held = last.count
    footprint = max(1.0, (last.host_used_bytes - first.host_used_bytes) / held)
    rss_per = (last.rss_bytes - first.rss_bytes) / held
    cpus, memory = float(machine.get("cpus") or 1), int(machine.get("memory_bytes") or 0)
    # Per idle workspace, read from the workspaces' own cgroups; the highest of the points, since a
    # saturated host (as 200 idle sandboxes make 2 cores) hands each one less than it would take.
    idle_cores = max(p.workspaces_cpu_pct / 100 / p.count for p in points if p.count)
    saturated = [p.count for p in points if p.host_cpu_pct >= 90]
    this_host = {
        "machine": f"this host ({cpus:g} CPU / {memory / GiB:.0f} GiB)",
        "cpus": cpus,
        "memory_bytes": memory,
        "seed_default": "",
        **estimate(cpus, memory, footprint, idle_cores),
    }
    seed_rows = [{**row, **estimate(row["cpus"], row["memory_bytes"], footprint, idle_cores)} for row in SEED]
    return {
        "measured": True,
        "held": held,
        "ping_p99_ms_at_held": percentile(last.ping_s, 99) * 1e3 if last.ping_s else None,
        "runtime_cpu_idle_pct_at_held": last.cpu_idle_pct,
        "footprint_mib_per_workspace": footprint / 2**20,
        "runtime_rss_kib_per_workspace": rss_per / 1024,
        "host_cpu_idle_pct_at_held": last.host_cpu_pct,
        "workspaces_memory_mib_per_workspace": last.workspaces_memory_bytes / held / 2**20,
        "host_cpu_millicores_per_idle_workspace": idle_cores * 1000,
        "host_cpu_saturated_at": saturated[0] if saturated else None,
        "reserve": "max(2 GiB, 10% of memory) for the host, Docker and the runtime",
        "rules": {
            "guaranteed": "min(cpus / cpu limit, usable memory / memory limit): every workspace at its limits",
            "memory_bound": "usable memory / memory limit: CPU shared, memory never overcommitted",
            "idle_footprint_bound": (
                f"the lower of usable memory / measured footprint and {IDLE_CPU_SHARE:.0%} of the cores / measured "
                "idle CPU per workspace (its cgroup): idle workspaces (small shape)"
            ),
        },
        "machines": [this_host, *seed_rows],
    }
