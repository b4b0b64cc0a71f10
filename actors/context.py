"""What every actor of one runtime shares, handed to each at construction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka
import zmq

from actors.supervision import Registry
from runtime.admission import Admission
from runtime.config import Settings
from runtime.errors import InternalError, WorkspaceError
from runtime.messages import AlertCleared, AlertRaised, Completed, Event, ReplyTo
from runtime.monitor import AlertBoard, Sweeps, UsageBoard
from runtime.outbox import Outbox
from runtime.pool import Pool
from runtime.processes import ProcessTable
from runtime.providers.base import Provider, ProviderBoard
from runtime.sampler import SampleBoard
from runtime.statelog import StateLog

__all__ = ["ActorContext"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorContext:
    """The runtime's shared machinery.

    Attributes:
        settings: The effective configuration.
        statelog: The LMDB state log (its writer thread owns all writes).
        zmq_context: The ZeroMQ context inproc outboxes must share with the Gateway.
        outbox_endpoint: The Gateway's inproc PULL endpoint.
        registry: The Supervisor's name table.
        admission: The ``WORKSPACE_MAX_CONCURRENT`` slots.
        board: The latest provider health.
        providers: The provider adapters by name.
        usage: The latest per-workspace measurements.
        alerts: The active alerts.
        pools: The warm pool of each provider that keeps one.
        sweeps: What the reaper did.
        processes: The streamed processes of every workspace.
        samples: The sampler's latest measurements.
        unreconciled: Providers that could not be reconciled at start (they were down);
            each one's ProviderActor finishes the job when the provider first answers.
    """

    settings: Settings
    statelog: StateLog
    zmq_context: zmq.Context[zmq.Socket[bytes]]
    outbox_endpoint: str
    registry: Registry
    admission: Admission
    board: ProviderBoard
    providers: Mapping[str, Provider]
    usage: UsageBoard
    alerts: AlertBoard
    pools: Mapping[str, Pool]
    sweeps: Sweeps
    processes: ProcessTable
    samples: SampleBoard = field(default_factory=SampleBoard)
    unreconciled: set[str] = field(default_factory=set)

    def publish(self, event: Event | None) -> None:
        """Write ``event`` to the state log, which publishes it (no-op for ``None``); does not wait."""
        if event is not None:
            self.statelog.submit(event)

    def alert(self, event: AlertRaised | AlertCleared | None) -> None:
        """Log and publish an alert raised or cleared (no-op for ``None``)."""
        if event is None:
            return
        if isinstance(event, AlertRaised):
            log.warning("alert %s: %s", event.key, event.message)
        else:
            log.info("alert %s cleared: %s", event.key, event.message)
        self.publish(event)

    def outbox(self) -> Outbox:
        """A new outbox for the calling thread."""
        return Outbox(self.zmq_context, self.outbox_endpoint)

    def run_blocking(
        self,
        actor: pykka.ActorRef[Any],
        kind: str,
        reply_to: ReplyTo | None,
        call: Callable[[], object],
    ) -> None:
        """Run a blocking ``call`` on its own thread and tell ``actor`` how it ended.

        The actor's mailbox stays free meanwhile. If the actor is gone when the call
        ends, the waiting client still gets an answer through a one-off outbox.
        """

        def work() -> None:
            value: object = None
            error: BaseException | None = None
            try:
                value = call()
            except WorkspaceError as exc:
                error = exc
            except Exception as exc:
                log.exception("%s call failed unexpectedly", kind)
                error = InternalError(f"{kind} failed: {exc!r}")
            try:
                actor.tell(Completed(kind, reply_to, value, error))
            except pykka.ActorDeadError:
                self._answer_orphan(kind, reply_to)

        threading.Thread(target=work, name=f"blocking-{kind}", daemon=True).start()

    def _answer_orphan(self, kind: str, reply_to: ReplyTo | None) -> None:
        if reply_to is None:
            return
        try:
            outbox = self.outbox()
        except zmq.ZMQError:
            return  # the runtime has shut down; the client will time out
        try:
            outbox.fail(reply_to, InternalError(f"the workspace actor stopped before its {kind} finished; retry"))
        finally:
            outbox.close()
