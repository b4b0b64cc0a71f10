"""ReaperActor: destroys what has expired and what nobody owns.

Every ``WORKSPACE_CLEANUP_INTERVAL_MIN`` minutes (fractions allowed; and once at start):

- expired: each ephemeral workspace (ready or failed, not a pool member) past its
  ``expires_at`` is sent a destroy with the reason ``expired``; its own actor does the
  work, so one stuck container never holds up the sweep; a failed pool member (which
  nobody will claim and which never expires) is destroyed the same way;
- orphans: containers and volumes carrying this runtime's instance label whose
  workspace has no record, or a destroyed one, are removed once they have been seen in
  two consecutive sweeps (the grace period is one interval). Only this runtime's labels
  are ever considered; nothing else on the host is touched.

Workspaces whose container vanished are failed by the ProviderActor's health checks.
What the reaper did is in ``stats`` (``reaper``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from actors.context import ActorContext
from actors.names import REAPER
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.errors import WorkspaceError
from runtime.messages import BackendState, Completed, DestroyWorkspace, Tick
from runtime.providers.base import Provider

__all__ = ["ReaperActor", "reaper_child"]

log = logging.getLogger(__name__)


def reaper_child(ctx: ActorContext) -> ChildSpec:
    """The child spec of the ReaperActor (permanent)."""
    return child_spec(REAPER, ReaperActor, ctx)


class ReaperActor(ChildActor):
    """Sweeps for expired workspaces and orphaned containers.

    Args:
        supervisor: The Supervisor.
        ctx: The runtime's shared machinery.
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], ctx: ActorContext) -> None:
        super().__init__(supervisor, REAPER)
        self._ctx = ctx
        self._listing = False
        self._suspects: set[tuple[str, str]] = set()

    def started(self) -> None:
        self.every(self._ctx.boards.sweeps.interval_s, Tick())
        self.actor_ref.tell(Tick())

    def handle(self, message: Any) -> Any:
        if isinstance(message, Tick):
            self._sweep()
        elif isinstance(message, Completed) and message.kind == "inventory":
            self._listing = False
            self._remove_orphans(message.value or {})
        elif isinstance(message, Completed) and message.kind == "orphan":
            if message.error is None:
                self._ctx.boards.sweeps.orphan_removed()
            else:
                log.error("removing an orphan failed: %s", message.error)
        else:
            super().handle(message)

    # ------------------------------------------------------------------ expired

    def _sweep(self) -> None:
        ctx = self._ctx
        now = time.time()
        reaped = 0
        for entry in ctx.statelog.workspaces():
            record = entry.record
            if entry.pooled and record.state == "failed":
                # Nobody will claim it, nobody sees it in `list`, and it never expires.
                ctx.deliver(record.id, DestroyWorkspace(None, reason="a warm pool member that failed"))
                reaped += 1
                continue
            if entry.pooled or record.persistent or record.expires_at is None or record.expires_at > now:
                continue
            if record.state not in ("ready", "failed"):
                continue
            expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires_at))
            log.info("workspace %s expired at %s: destroying it", record.id, expired)
            ctx.deliver(record.id, DestroyWorkspace(None, reason=f"expired at {expired}"))
            reaped += 1
        ctx.boards.sweeps.swept(reaped)
        if not self._listing:
            self._listing = True
            providers = dict(ctx.providers)
            ctx.run_blocking(self.actor_ref, "inventory", None, lambda: _inventories(providers))

    # ------------------------------------------------------------------ orphans

    def _remove_orphans(self, inventories: dict[str, dict[str, BackendState]]) -> None:
        suspects = set()
        for provider, states in inventories.items():
            for workspace_id, state in states.items():
                entry = self._ctx.statelog.get(workspace_id)
                if entry is not None and entry.record.state != "destroyed":
                    continue
                key = (provider, state.handle)
                suspects.add(key)
                if key not in self._suspects:
                    continue  # first sighting: wait one interval
                log.warning(
                    "removing %s: it carries this runtime's labels but workspace %s %s",
                    state.handle,
                    workspace_id,
                    "has no record" if entry is None else "was destroyed",
                )
                self._ctx.run_blocking(
                    self.actor_ref, "orphan", None, _destroyer(self._ctx.providers[provider], state.handle)
                )
        self._suspects = suspects


def _destroyer(provider: Provider, handle: str) -> Callable[[], None]:
    return lambda: provider.destroy(handle)


def _inventories(providers: dict[str, Any]) -> dict[str, dict[str, BackendState]]:
    """Each provider's inventory; a provider that cannot answer is skipped this time."""
    found = {}
    for name, provider in providers.items():
        try:
            found[name] = provider.inventory()
        except WorkspaceError as exc:
            log.warning("the reaper could not list provider %s: %s", name, exc.message)
    return found
