"""PoolActor: keeps ``WORKSPACE_WARM_POOL_SIZE`` ready workspaces per provider.

Members are created like any workspace (their own WorkspaceActor, recorded in the state
log with ``pooled=True``), from the default image and resources, only while their
provider is healthy and a capacity slot is free. Claims never wait for this actor: the
ProviderActor takes a ready member directly from the shared ``Pool`` and tells this
actor to refill. A failed boot is counted and retried at the next tick, not at once, so
a broken provider does not spin.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import pykka

from actors.context import ActorContext
from actors.names import POOL
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.capacity.resources import new_workspace_id, resolve_create
from runtime.errors import CapacityExceeded, WorkspaceError
from runtime.messages import BootWorkspace, CreateArgs, Refill, Tick

__all__ = ["PoolActor", "pool_child"]

log = logging.getLogger(__name__)


def pool_child(ctx: ActorContext) -> ChildSpec:
    """The child spec of the PoolActor (permanent)."""
    return child_spec(POOL, PoolActor, ctx)


class PoolActor(ChildActor):
    """Refills every provider's pool to its target.

    Args:
        supervisor: The Supervisor.
        ctx: The runtime's shared machinery.
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], ctx: ActorContext) -> None:
        super().__init__(supervisor, POOL)
        self._ctx = ctx

    def started(self) -> None:
        self.every(self._ctx.settings.health_interval_s, Tick())
        self.actor_ref.tell(Refill())

    def handle(self, message: Any) -> Any:
        if isinstance(message, Refill | Tick):
            self._refill()
        else:
            super().handle(message)

    def _refill(self) -> None:
        ctx = self._ctx
        for provider, pool in ctx.boards.pools.items():
            status = ctx.boards.providers.get(provider)
            if status is None or not status.healthy:
                continue
            for _ in range(pool.deficit()):
                workspace_id = new_workspace_id()
                try:
                    entry = resolve_create(
                        ctx.settings,
                        CreateArgs(),
                        workspace_id=workspace_id,
                        provider=provider,
                        runtime=status.runtime,
                        now=time.time(),
                    )
                    ctx.boards.admission.reserve(workspace_id)
                except CapacityExceeded:
                    break  # user workspaces come first; retried at the next tick
                except WorkspaceError:
                    log.exception("the default workspace settings are not valid for the pool")
                    return
                member = msgspec.structs.replace(
                    entry, record=msgspec.structs.replace(entry.record, expires_at=None), pooled=True
                )
                pool.booting(workspace_id)
                ctx.deliver(workspace_id, BootWorkspace(None, member))
