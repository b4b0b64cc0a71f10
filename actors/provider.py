"""ProviderActor: one per provider; admits creates and watches the provider's workspaces.

Admission is quick and never blocks on the backend: check health (an unhealthy default
provider hands the create to a healthy fallback), resolve the request against the
defaults, take a capacity slot, then hand the new entry to a fresh WorkspaceActor
(started by the workspaces' supervisor) which does the slow part.

Watching has two halves. A watcher thread follows the backend's event stream (out of
memory, container died, container removed) and forwards each event to the workspace's
actor. Every ``WORKSPACE_HEALTH_INTERVAL_S`` (and whenever the stream reconnects) a
health check runs off the mailbox: the provider's probe, its inventory compared with the
records (catching what the stream missed), each workspace's disk use against its
budget, and the ready workspaces' expiries handed to the provider (``renew``: E2B's
sandbox timeouts follow them). An ``extend`` asks for a check at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import msgspec
import pykka

from actors.context import ActorContext
from actors.names import provider_name
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.capacity.pool import Pool, matches_pool
from runtime.capacity.resources import new_workspace_id, resolve_create
from runtime.errors import CapacityExceeded, ProviderUnavailable, WorkspaceError
from runtime.messages import (
    Adopt,
    BackendState,
    BootWorkspace,
    Completed,
    ContainerEvent,
    CreateWorkspace,
    DestroyWorkspace,
    Probe,
    ProviderHealthChanged,
    ProviderStatus,
    Resync,
    Tick,
)
from runtime.monitoring.thresholds import judge_disk
from runtime.providers.base import EventWatch
from runtime.state.reconcile import interrupted_reason, plan
from runtime.wire.outbox import Outbox

__all__ = ["HealthReport", "ProviderActor", "provider_child"]

log = logging.getLogger(__name__)

_WATCH_BACKOFF_MAX_S = 10.0


def provider_child(ctx: ActorContext, provider: str) -> ChildSpec:
    """The child spec of the ProviderActor for ``provider`` (permanent)."""
    return child_spec(provider_name(provider), ProviderActor, ctx, provider)


class HealthReport(msgspec.Struct, frozen=True):
    """One health check: the probe, and when the backend answered, its inventory and disk use."""

    probe: Probe
    inventory: dict[str, BackendState] | None = None
    disk: dict[str, int] = {}
    ready: frozenset[str] = frozenset()


class ProviderActor(ChildActor):
    """Admission, health and watching for one provider.

    Args:
        supervisor: The Supervisor.
        ctx: The runtime's shared machinery.
        provider: The provider's name (a key of ``ctx.providers``).
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], ctx: ActorContext, provider: str) -> None:
        super().__init__(supervisor, provider_name(provider))
        self._ctx = ctx
        self._provider_name = provider
        self._provider = ctx.providers[provider]
        self._outbox: Outbox | None = None
        self._checking = False
        self._again = False
        self._stop_watching = threading.Event()
        self._watch: EventWatch | None = None

    # ------------------------------------------------------------------ lifecycle

    def started(self) -> None:
        self._outbox = self._ctx.outbox()
        self._apply(HealthReport(self._provider.probe()))
        self.every(self._ctx.settings.health_interval_s, Tick())
        threading.Thread(target=self._watch_loop, name=f"watch-{self._provider_name}", daemon=True).start()

    def stopped(self) -> None:
        self._stop_watching.set()
        if self._watch is not None:
            self._watch.close()
        if self._outbox is not None:
            self._outbox.close()

    def handle(self, message: Any) -> Any:
        if isinstance(message, CreateWorkspace):
            self._create(message)
        elif isinstance(message, ContainerEvent):
            self._forward(message)
        elif isinstance(message, Tick):
            self._check()
        elif isinstance(message, Resync):
            self._check(again=True)
        elif isinstance(message, Completed) and message.kind == "health":
            self._checking = False
            if isinstance(message.value, HealthReport):
                self._apply(message.value)
            if self._again:  # asked for while that check ran: what it saw may predate the request
                self._check()
        else:
            super().handle(message)

    # ------------------------------------------------------------------ admission

    def _create(self, message: CreateWorkspace) -> None:
        """Serve a create from the warm pool when it matches, else admit a cold create."""
        assert self._outbox is not None
        ctx = self._ctx
        pool = ctx.boards.pools.get(self._provider_name)
        workspace_id = ""
        try:
            status = ctx.boards.providers.get(self._provider_name)
            if status is None or not status.healthy:
                if status is not None and self._fall_back(message):
                    return
                detail = status.detail if status is not None else "not checked yet"
                raise ProviderUnavailable(f"provider {self._provider_name} is unhealthy: {detail}")
            workspace_id = new_workspace_id()
            entry = resolve_create(
                ctx.settings, message.args, workspace_id=workspace_id, provider=self._provider_name,
                runtime=status.runtime, now=time.time(), fallback_from=message.fallback_from,
                request=message.reply_to.key,
            )  # fmt: skip
            if pool is not None and not message.cold and matches_pool(ctx.settings, message.args, self._provider_name):
                member = pool.claim()
                if member is not None:  # the member's actor answers, then asks for a refill
                    ctx.deliver(
                        member, Adopt(message.reply_to, message.args, self._provider_name, message.fallback_from)
                    )
                    return
            self._admit(workspace_id, pool)
            ctx.deliver(workspace_id, BootWorkspace(message.reply_to, entry))
        except WorkspaceError as exc:
            if workspace_id:
                ctx.boards.admission.release(workspace_id)  # nothing was made with the slot
            self._outbox.fail(message.reply_to, exc)

    def _fall_back(self, message: CreateWorkspace) -> bool:
        """Hand a create for the default provider to the first healthy fallback, if there is one.

        Only a create that named no provider falls back, and only once
        (``WORKSPACE_FALLBACK_PROVIDERS``).
        """
        if message.args.provider is not None or message.fallback_from is not None:
            return False
        for name in self._ctx.settings.fallback_providers:
            if name == self._provider_name or not self._ctx.boards.providers.healthy(name):
                continue
            moved = msgspec.structs.replace(message, fallback_from=self._provider_name)
            if self._ctx.registry.tell(provider_name(name), moved):
                log.info("provider %s is unhealthy: creating on fallback provider %s", self._provider_name, name)
                return True
        return False

    def _admit(self, workspace_id: str, pool: Pool | None) -> None:
        """Take a capacity slot, evicting an idle pool member if that is the only way."""
        admission = self._ctx.boards.admission
        try:
            admission.reserve(workspace_id)
        except CapacityExceeded:
            victim = pool.evict() if pool is not None else None
            if victim is None:
                raise
            admission.swap(victim, workspace_id)
            reason = "evicted from the warm pool to make room for a create"
            # its actor releases nothing (the slot moved here) and asks the pool to refill
            self._ctx.deliver(victim, DestroyWorkspace(None, reason=reason))

    # ------------------------------------------------------------------ watching

    def _watch_loop(self) -> None:
        """Follow the backend's events; reconnect with backoff, resyncing after each gap."""
        backoff = 0.5
        while not self._stop_watching.is_set():
            try:
                self._watch = self._provider.watch()
                self.actor_ref.tell(Resync())
                backoff = 0.5
                for event in self._watch:
                    self.actor_ref.tell(event)
            except pykka.ActorDeadError:
                return
            except WorkspaceError as exc:
                log.debug("provider %s event stream: %s", self._provider_name, exc.message)
            except NotImplementedError:
                return  # this provider has no event stream; the health checks suffice
            if self._stop_watching.is_set():
                return
            try:  # the stream broke: check now rather than at the next interval (a daemon stopping)
                self.actor_ref.tell(Tick())
            except pykka.ActorDeadError:
                return
            self._stop_watching.wait(backoff)
            backoff = min(backoff * 2, _WATCH_BACKOFF_MAX_S)

    def _forward(self, event: ContainerEvent) -> None:
        entry = self._ctx.statelog.get(event.workspace_id)
        if entry is None or entry.record.provider != self._provider_name:
            return
        if entry.record.state in ("ready", "creating"):
            self._ctx.deliver(event.workspace_id, event)

    # ------------------------------------------------------------------ health

    def _check(self, again: bool = False) -> None:
        if self._checking:
            self._again = self._again or again  # a resync runs after the check under way, not within it
            return
        self._checking, self._again = True, False
        provider = self._provider
        # Only workspaces ready before the inventory is taken can be judged by it.
        entries = [
            entry
            for entry in self._ctx.statelog.workspaces()
            if entry.record.provider == self._provider_name and entry.record.state == "ready" and entry.handle
        ]
        ready = {entry.record.id: entry.handle for entry in entries}
        expiries = {entry.handle: entry.record.expires_at for entry in entries}

        def check() -> HealthReport:
            probe = provider.probe()
            if probe.healthy:
                provider.renew(expiries)
            try:
                inventory = provider.inventory()
            except WorkspaceError:
                return HealthReport(probe)
            return HealthReport(probe, inventory, provider.disk_usage(list(ready.values())), frozenset(ready))

        self._ctx.run_blocking(self.actor_ref, "health", None, check)

    def _apply(self, report: HealthReport) -> None:
        probe = report.probe
        status = ProviderStatus(
            name=self._provider_name,
            healthy=probe.healthy,
            checked_at=time.time(),
            detail=probe.detail,
            runtime=probe.runtime,
            data_root=probe.data_root,
        )
        if self._ctx.boards.providers.update(status):
            level = logging.INFO if probe.healthy else logging.WARNING
            state = "healthy" if probe.healthy else "unhealthy"
            log.log(level, "provider %s is %s (runtime %s)%s", self._provider_name, state, probe.runtime,
                    f": {probe.detail}" if probe.detail else "")  # fmt: skip
            self._ctx.publish(
                ProviderHealthChanged(
                    provider=self._provider_name, healthy=probe.healthy, detail=probe.detail, runtime=probe.runtime
                )
            )
        if report.inventory is not None:
            if self._provider_name in self._ctx.unreconciled:
                self._recover(report.inventory)
            self._reconcile(report)

    def _recover(self, inventory: dict[str, BackendState]) -> None:
        """Finish the start-up reconciliation this provider missed by being down at start.

        Creates for this provider were refused until now, so every record it has left
        ``creating`` or ``stopping`` was interrupted by the last run: roll back or finish.
        The ready ones are judged by ``_reconcile``; orphans are the reaper's.
        """
        found = plan(self._provider_name, self._ctx.statelog.workspaces(), inventory)
        for entry in found.interrupted:
            reason = interrupted_reason(entry.record.state)
            self._ctx.deliver(entry.record.id, DestroyWorkspace(None, reason=reason))
        self._ctx.unreconciled.discard(self._provider_name)
        log.info("provider %s answers again: %d interrupted workspace(s) to finish", self._provider_name,
                 len(found.interrupted))  # fmt: skip

    def _reconcile(self, report: HealthReport) -> None:
        """Tell each ready workspace what the backend shows but the events did not say."""
        inventory, disk = report.inventory or {}, report.disk
        for entry in self._ctx.statelog.workspaces():
            record = entry.record
            if record.provider != self._provider_name:
                continue
            if record.state != "ready":
                self._ctx.alert(
                    self._ctx.boards.alerts.clear(f"disk:{record.id}", f"workspace {record.id} is {record.state}")
                )
                self._ctx.boards.usage.forget(record.id)
                continue
            if record.id not in report.ready:
                continue  # it became ready after the inventory was taken
            backend = inventory.get(record.id)
            if backend is None:
                self._forward(ContainerEvent(record.id, "vanished", "the workspace's container no longer exists"))
            elif not backend.running:
                self._forward(ContainerEvent(record.id, "died", backend.detail))
            used = disk.get(entry.handle)
            if used is not None:
                boards = self._ctx.boards
                threshold = self._ctx.settings.alert_threshold_pct
                change = judge_disk(
                    record.id, used, record.disk_bytes, boards.alerts, boards.usage, threshold_pct=threshold
                )
                self._ctx.alert(change)
