"""SamplerActor: measures the host and every workspace, and raises and clears alerts.

Every ``WORKSPACE_SAMPLE_INTERVAL_S`` a sample is taken off the mailbox (see
``runtime.sampler``); its values go to the boards ``stats`` and the metrics read, and
each is held against ``WORKSPACE_ALERT_THRESHOLD_PCT``:

- ``host:cpu``, ``host:memory``, ``host:disk`` (Docker's data root);
- ``reserved:cpu``, ``reserved:memory``: the sum of the workspaces' limits (pool members
  included) against what the host has;
- ``cpu:<id>``, ``memory:<id>``: each ready workspace against its own limits.

One alert per condition: raised once when a value reaches the threshold, cleared once
when it falls 5% below (see ``AlertBoard``), or when its workspace ends.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from actors.context import ActorContext
from actors.names import SAMPLER
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.messages import Completed, Tick
from runtime.sampler import Sample, Sampler

__all__ = ["SamplerActor", "sampler_child"]

log = logging.getLogger(__name__)

_PER_WORKSPACE = ("cpu:", "memory:")


def sampler_child(ctx: ActorContext) -> ChildSpec:
    """The child spec of the SamplerActor (permanent)."""
    return child_spec(SAMPLER, SamplerActor, ctx)


class SamplerActor(ChildActor):
    """Takes a sample every interval and turns it into usage, alerts and clears.

    Args:
        supervisor: The Supervisor.
        ctx: The runtime's shared machinery.
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], ctx: ActorContext) -> None:
        super().__init__(supervisor, SAMPLER)
        self._ctx = ctx
        self._sampler = Sampler()
        self._sampling = False

    def started(self) -> None:
        self.every(self._ctx.settings.sample_interval_s, Tick())

    def handle(self, message: Any) -> Any:
        if isinstance(message, Tick):
            self._sample()
        elif isinstance(message, Completed) and message.kind == "sample":
            self._sampling = False
            if isinstance(message.value, Sample):
                self._apply(message.value)
            elif message.error is not None:
                log.warning("sampling failed: %s", message.error)
        else:
            super().handle(message)

    def _sample(self) -> None:
        if self._sampling:
            return  # the previous sample is still being taken
        self._sampling = True
        ctx, sampler = self._ctx, self._sampler
        entries = ctx.statelog.workspaces()
        providers = dict(ctx.providers)
        data_root = ctx.board.data_root()
        ctx.run_blocking(self.actor_ref, "sample", None, lambda: sampler.sample(entries, providers, data_root))

    def _apply(self, sample: Sample) -> None:
        ctx = self._ctx
        ctx.samples.set(sample)
        host = sample.host
        self._check("host:cpu", "cpu", host.cpu_pct, f"the host's CPU is at {host.cpu_pct:.0f}%")
        self._check("host:memory", "memory", host.mem_pct, f"the host's memory is at {host.mem_pct:.0f}%")
        if host.disk_pct is not None:
            self._check("host:disk", "disk", host.disk_pct, f"Docker's disk is {host.disk_pct:.0f}% full")
        self._check(
            "reserved:cpu",
            "cpu",
            host.reserved_cpu_pct,
            f"workspaces reserve {host.reserved_cpu:g} CPUs, {host.reserved_cpu_pct:.0f}% of the host's {host.cpus}",
        )
        self._check(
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
            ctx.usage.update(
                workspace_id,
                cpu_pct=workspace.cpu_pct,
                memory_bytes=workspace.memory_bytes,
                memory_pct=workspace.memory_pct,
            )
            self._check(
                f"memory:{workspace_id}",
                "memory",
                workspace.memory_pct,
                f"workspace {workspace_id} uses {workspace.memory_bytes >> 20} MiB, "
                f"{workspace.memory_pct:.0f}% of its memory limit",
                workspace_id,
            )
            if workspace.cpu_pct is not None:
                self._check(
                    f"cpu:{workspace_id}",
                    "cpu",
                    workspace.cpu_pct,
                    f"workspace {workspace_id} uses {workspace.cpu_pct:.0f}% of its CPU limit",
                    workspace_id,
                )
        for alert in ctx.alerts.active():
            if alert.key.startswith(_PER_WORKSPACE) and alert.workspace_id not in measured:
                ctx.alert(ctx.alerts.clear(alert.key, f"workspace {alert.workspace_id} is no longer running"))

    def _check(self, key: str, resource: str, pct: float, what: str, workspace_id: str | None = None) -> None:
        threshold = self._ctx.settings.alert_threshold_pct
        event = self._ctx.alerts.evaluate(
            key,
            resource=resource,
            value=pct,
            threshold=threshold,
            limit=100.0,
            message=f"{what} (threshold {threshold:g}%)",
            workspace_id=workspace_id,
        )
        self._ctx.alert(event)
