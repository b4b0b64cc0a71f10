"""What ending a workspace frees, and giving up on a workspace whose actor keeps crashing."""

from __future__ import annotations

import msgspec

from actors.context import ActorContext
from actors.names import POOL, WORKSPACE_PREFIX
from runtime.messages import Refill, StoredWorkspace

__all__ = ["give_up", "release"]


def release(ctx: ActorContext, entry: StoredWorkspace) -> None:
    """The workspace has ended: free its capacity slot, measurements, processes and pool place."""
    workspace_id = entry.record.id
    ctx.boards.admission.release(workspace_id)
    ctx.boards.usage.forget(workspace_id)
    ctx.processes.forget(workspace_id)
    if entry.pooled:
        pool = ctx.boards.pools.get(entry.record.provider)
        if pool is not None:
            pool.remove(workspace_id)
        ctx.registry.tell(POOL, Refill())


def give_up(ctx: ActorContext, name: str, reason: str) -> None:
    """A workspace's actor crashed too often to be restarted: the workspace is ``failed``.

    Its container is left for ``destroy`` (or the reaper, once it expires) to remove,
    as for any failed workspace.
    """
    entry = ctx.statelog.get(name.removeprefix(WORKSPACE_PREFIX))
    if entry is None or entry.record.state in ("destroyed", "failed"):
        return
    record = msgspec.structs.replace(entry.record, state="failed", error=reason)
    entry = msgspec.structs.replace(
        entry, record=record, request="" if entry.record.state == "creating" else entry.request
    )
    ctx.statelog.put_workspace(entry, reason="its actor was given up on")
    release(ctx, entry)
