"""SamplerActor: measures the host and every workspace, and raises and clears alerts.

Every ``WORKSPACE_SAMPLE_INTERVAL_S`` a sample is taken off the mailbox (see
``runtime.monitoring.sampler``); its values go to the boards ``stats`` and the metrics
read, and ``runtime.monitoring.thresholds`` turns it into the alerts it raises and
clears, which are logged and published.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from actors.context import ActorContext
from actors.names import SAMPLER
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.messages import Completed, Tick
from runtime.monitoring.sampler import Sample, Sampler
from runtime.monitoring.thresholds import judge_sample

__all__ = ["SamplerActor", "sampler_child"]

log = logging.getLogger(__name__)


def sampler_child(ctx: ActorContext) -> ChildSpec:
    """The child spec of the SamplerActor (permanent)."""
    return child_spec(SAMPLER, SamplerActor, ctx)


class SamplerActor(ChildActor):
    """Takes a sample every interval and turns it into usage, alerts and clears.

    A sample arrives as ``Completed("sample", value=Sample)``, from its own worker or
    from anyone holding a sample (a test drives the alerts with explicit samples so).

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
        data_root = ctx.boards.providers.data_root()
        ctx.run_blocking(self.actor_ref, "sample", None, lambda: sampler.sample(entries, providers, data_root))

    def _apply(self, sample: Sample) -> None:
        boards = self._ctx.boards
        boards.samples.set(sample)
        for change in judge_sample(sample, boards.alerts, boards.usage, self._ctx.settings.alert_threshold_pct):
            self._ctx.alert(change)
