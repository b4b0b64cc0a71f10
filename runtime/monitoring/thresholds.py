"""What a measurement means: the alerts it raises and clears against the threshold.

Every value is held against ``WORKSPACE_ALERT_THRESHOLD_PCT``:

- ``host:cpu``, ``host:memory``, ``host:disk`` (Docker's data root);
- ``reserved:cpu``, ``reserved:memory``: the sum of the workspaces' limits (pool members
  included) against what the host has;
- ``cpu:<id>``, ``memory:<id>``: each ready workspace against its own limits;
- ``disk:<id>``: each ready workspace's disk use against its disk budget.

One alert per condition (``AlertBoard``): raised once when a value reaches the
threshold, cleared once when it falls 5% below, or when its workspace ends. Each
function here updates the boards and returns the events to publish, in order.
"""

from __future__ import annotations

from runtime.messages import AlertCleared, AlertRaised
from runtime.monitoring.alerts import AlertBoard
from runtime.monitoring.boards import UsageBoard
from runtime.monitoring.sampler import Sample

__all__ = ["AlertChange", "judge_disk", "judge_sample"]

AlertChange = AlertRaised | AlertCleared
_PER_WORKSPACE = ("cpu:", "memory:")


def judge_sample(sample: Sample, alerts: AlertBoard, usage: UsageBoard, threshold_pct: float) -> list[AlertChange]:
    """Record a sample's per-workspace usage and return the alerts it raises and clears."""
    changes: list[AlertChange | None] = []

    def check(key: str, resource: str, pct: float, what: str, workspace_id: str | None = None) -> None:
        changes.append(
            alerts.evaluate(
                key,
                resource=resource,
                value=pct,
                threshold=threshold_pct,
                limit=100.0,
                message=f"{what} (threshold {threshold_pct:g}%)",
                workspace_id=workspace_id,
            )
        )

    host = sample.host
    check("host:cpu", "cpu", host.cpu_pct, f"the host's CPU is at {host.cpu_pct:.0f}%")
    check("host:memory", "memory", host.mem_pct, f"the host's memory is at {host.mem_pct:.0f}%")
    if host.disk_pct is not None:
        check("host:disk", "disk", host.disk_pct, f"Docker's disk is {host.disk_pct:.0f}% full")
    check(
        "reserved:cpu",
        "cpu",
        host.reserved_cpu_pct,
        f"workspaces reserve {host.reserved_cpu:g} CPUs, {host.reserved_cpu_pct:.0f}% of the host's {host.cpus}",
    )
    check(
        "reserved:memory",
        "memory",
        host.reserved_memory_pct,
        f"workspaces reserve {host.reserved_memory_bytes >> 20} MiB of memory, "
        f"{host.reserved_memory_pct:.0f}% of the host's {host.memory_bytes >> 20} MiB",
    )
    measured = set()
    for workspace in sample.workspaces:
        workspace_id = workspace.workspace_id
        measured.add(workspace_id)
        usage.update(
            workspace_id, cpu_pct=workspace.cpu_pct, memory_bytes=workspace.memory_bytes,
            memory_pct=workspace.memory_pct,
        )  # fmt: skip
        check(
            f"memory:{workspace_id}",
            "memory",
            workspace.memory_pct,
            f"workspace {workspace_id} uses {workspace.memory_bytes >> 20} MiB, "
            f"{workspace.memory_pct:.0f}% of its memory limit",
            workspace_id,
        )
        if workspace.cpu_pct is not None:
            check(
                f"cpu:{workspace_id}",
                "cpu",
                workspace.cpu_pct,
                f"workspace {workspace_id} uses {workspace.cpu_pct:.0f}% of its CPU limit",
                workspace_id,
            )
    for alert in alerts.active():
        if alert.key.startswith(_PER_WORKSPACE) and alert.workspace_id not in measured:
            changes.append(alerts.clear(alert.key, f"workspace {alert.workspace_id} is no longer running"))
    return [change for change in changes if change is not None]


def judge_disk(
    workspace_id: str, used: int, budget: int, alerts: AlertBoard, usage: UsageBoard, *, threshold_pct: float
) -> AlertChange | None:
    """Record a workspace's disk use; return the alert it raises or clears, if any."""
    usage.update(workspace_id, disk_used_bytes=used, disk_bytes=budget)
    return alerts.evaluate(
        f"disk:{workspace_id}",
        resource="disk",
        value=float(used),
        threshold=budget * threshold_pct / 100,
        limit=float(budget),
        message=f"workspace {workspace_id} uses {used} bytes of disk, {100 * used / budget:.0f}% "
        f"of its budget of {budget} (threshold {threshold_pct:g}%)",
        workspace_id=workspace_id,
    )
