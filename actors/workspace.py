"""WorkspaceActor: one per workspace, owning its lifecycle from creating to destroyed.

Every state change is persisted (and published) before it is acknowledged. Slow calls
(create, exec, file transfers, destroy) run on their own threads and come back as
``Completed`` messages, so ``get``, ``destroy`` or another exec are never held up by a
long command. The actor stops once the workspace has ended (destroyed or failed) and no
call is in flight; a crashed actor is restarted and rebuilds itself from the state log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pykka

from actors import calls
from actors.context import ActorContext
from actors.names import POOL, WORKSPACE_PREFIX, provider_name, workspace_name
from actors.release import release
from actors.supervision import ChildActor, ChildSpec, child_spec
from runtime.capacity.pool import Pool, adopt
from runtime.capacity.resources import resolve_create
from runtime.errors import Conflict, InternalError, ProviderUnavailable, WorkspaceError
from runtime.messages import (
    Adopt,
    BootWorkspace,
    Completed,
    ContainerEvent,
    CreateWorkspace,
    DestroyWorkspace,
    Extend,
    GitClone,
    ProcessCall,
    ReadFile,
    Refill,
    ReplyTo,
    Resync,
    RunExec,
    State,
    StoredWorkspace,
    WriteFile,
)
from runtime.providers.base import Provider
from runtime.state.reconcile import interrupted_reason
from runtime.wire.outbox import Outbox

__all__ = ["WorkspaceActor", "workspace_child"]

log = logging.getLogger(__name__)


def workspace_child(ctx: ActorContext, name: str) -> ChildSpec:
    """The child spec of the actor registered as ``name`` (``workspace:<id>``).

    Transient: restarted only after a crash, by the workspaces' dynamic supervisor.
    """
    workspace_id = name.removeprefix(WORKSPACE_PREFIX)
    return child_spec(workspace_name(workspace_id), WorkspaceActor, ctx, workspace_id, restart="transient")


class WorkspaceActor(ChildActor):
    """The lifecycle of one workspace.

    Args:
        supervisor: The Supervisor.
        ctx: The runtime's shared machinery.
        workspace_id: The workspace this actor owns.
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], ctx: ActorContext, workspace_id: str) -> None:
        super().__init__(supervisor, workspace_name(workspace_id))
        self._ctx = ctx
        self._id = workspace_id
        self._entry: StoredWorkspace | None = None
        self._outbox: Outbox | None = None
        self._inflight = 0
        self._destroy_waiters: list[ReplyTo | None] = []
        self._destroy_reason: str | None = None
        self._stopping = False  # decided: pykka's stop message is queued behind what came meanwhile

    # ------------------------------------------------------------------ lifecycle

    def started(self) -> None:
        self._outbox = self._ctx.outbox()
        self._entry = self._ctx.statelog.get(self._id)
        state = self._state()
        if state in ("creating", "stopping"):
            # Only the actor doing a create or destroy leaves these states, and a new actor
            # is doing neither: the previous one crashed mid-way. Roll back or finish.
            log.warning("workspace %s was left %s by a crashed actor", self._id, state)
            self.actor_ref.tell(DestroyWorkspace(None, reason=interrupted_reason(state)))

    def stopped(self) -> None:
        # Anything still queued reached us after we decided to stop: answer it.
        while self._outbox is not None and not self.actor_inbox.empty():
            self._refuse_late(self.actor_inbox.get().message)
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def _refuse_late(self, message: Any) -> None:
        reply_to = getattr(message, "reply_to", None)
        if isinstance(reply_to, ReplyTo) and self._outbox is not None:
            self._outbox.fail(reply_to, Conflict(f"workspace {self._id} is {self._state()}", retryable=True))

    def handle(self, message: Any) -> Any:
        if self._stopping:  # work begun now would be lost with this actor: the client retries, a new one takes it
            return self._refuse_late(message)
        try:
            self._handle(message)
        except Exception as exc:
            # The crash ends this actor (the Supervisor starts a new one); whoever waits on
            # this message is told now rather than left to time out.
            reply_to = getattr(message, "reply_to", None)
            if isinstance(reply_to, ReplyTo):
                error = InternalError(f"the actor of workspace {self._id} crashed handling this request: {exc!r}")
                self._reply(reply_to, error=error)
            raise

    def _handle(self, message: Any) -> None:
        if isinstance(message, Completed):
            self._inflight -= 1
            self._completed(message)
        elif isinstance(message, RunExec | WriteFile | ReadFile | ProcessCall | GitClone):
            self._start_call(message)
        elif isinstance(message, DestroyWorkspace):
            self._destroy(message.reply_to, message.reason)
        elif isinstance(message, Adopt):
            self._adopt(message)
        elif isinstance(message, ContainerEvent):
            self._container_event(message)
        elif isinstance(message, Extend):
            self._extend(message)
        elif isinstance(message, BootWorkspace):
            self._boot(message)
        else:
            super().handle(message)
        if self._state() in ("destroyed", "failed") and self._inflight == 0 and not self._destroy_waiters:
            self._stopping = True
            self.stop()

    # ------------------------------------------------------------------ helpers

    def _state(self) -> State | str:
        return self._entry.record.state if self._entry is not None else "unknown"

    def _persist(
        self,
        state: State,
        *,
        error: str | None = None,
        handle: str | None = None,
        reason: str | None = None,
        **changes: Any,
    ) -> None:
        assert self._entry is not None
        record = msgspec.structs.replace(self._entry.record, state=state, error=error, **changes)
        entry = msgspec.structs.replace(
            self._entry, record=record, handle=self._entry.handle if handle is None else handle
        )
        self._ctx.statelog.put_workspace(entry, reason=reason)
        self._entry = entry
        log.info("workspace %s is %s%s", self._id, state, f": {error or reason}" if error or reason else "")

    def _reply(self, reply_to: ReplyTo | None, result: Any = None, error: WorkspaceError | None = None) -> None:
        if reply_to is None or self._outbox is None:
            return
        if error is not None:
            self._outbox.fail(reply_to, error)
        else:
            self._outbox.reply(reply_to, result)

    def _run(self, kind: str, reply_to: ReplyTo | None, call: Callable[[], object]) -> None:
        self._inflight += 1
        self._ctx.run_blocking(self.actor_ref, kind, reply_to, call)

    def _provider(self) -> Provider:
        assert self._entry is not None
        return self._ctx.providers[self._entry.record.provider]

    def _end(self) -> None:
        """The workspace no longer exists as far as capacity, measurements and the pool go."""
        if self._entry is not None:
            release(self._ctx, self._entry)
        else:
            self._ctx.boards.admission.release(self._id)

    def _pool(self) -> Pool | None:
        if self._entry is None or not self._entry.pooled:
            return None
        return self._ctx.boards.pools.get(self._entry.record.provider)

    # ------------------------------------------------------------------ create

    def _boot(self, message: BootWorkspace) -> None:
        self._entry = message.entry
        try:
            self._persist("creating")
        except Exception as exc:
            self._end()
            self._entry = msgspec.structs.replace(
                self._entry, record=msgspec.structs.replace(self._entry.record, state="failed")
            )
            self._reply(message.reply_to, error=InternalError(f"could not record the workspace: {exc}"))
            return
        provider, spec = self._provider(), message.entry.spec
        self._run("boot", message.reply_to, lambda: provider.create(spec))

    def _booted(self, done: Completed) -> None:
        pool = self._pool()
        if isinstance(done.error, WorkspaceError):
            if pool is not None:
                pool.failed(self._id)  # counted; the PoolActor retries at its next tick
            # It made nothing, so a retry of the same request may run it again.
            assert self._entry is not None
            self._entry = msgspec.structs.replace(self._entry, request="")
            self._persist("failed", error=done.error.message, reason="create failed")
            self._end()
            self._reply(done.reply_to, error=done.error)
        elif self._state() == "creating":
            self._persist("ready", handle=str(done.value))
            assert self._entry is not None
            if pool is not None:
                pool.ready(self._id)
                self._ctx.registry.tell(POOL, Refill())  # the next member may boot now
            self._reply(done.reply_to, self._entry.record)
        else:  # the backend reported it dead before create returned
            assert self._entry is not None
            error = self._entry.record.error
            self._persist("failed", error=error, handle=str(done.value), reason="created after it failed")
            self._reply(done.reply_to, error=Conflict(f"workspace {self._id} failed as it started: {error}"))
        if self._destroy_waiters:
            self._begin_destroy()

    # ------------------------------------------------------------------ calls: exec and files

    def _unavailable(self) -> ProviderUnavailable | None:
        return calls.unavailable(self._ctx.boards, self._entry)

    def _start_call(self, message: RunExec | WriteFile | ReadFile | ProcessCall | GitClone) -> None:
        state = self._state()
        if state != "ready":
            self._reply(message.reply_to, error=Conflict(f"workspace {self._id} is {state}, not ready"))
            return
        unavailable = self._unavailable()
        if unavailable is not None:  # answer at once rather than wait on a backend that is down
            self._reply(message.reply_to, error=unavailable)
            return
        assert self._entry is not None
        try:
            provider = self._provider()
            kind, call = calls.prepare(message, self._entry, provider.commands, self._ctx.processes, self._ctx.github)
        except WorkspaceError as exc:
            self._reply(message.reply_to, error=exc)
            return
        self._run(kind, message.reply_to, call)

    def _call_done(self, done: Completed) -> None:
        state = self._state()
        what = calls.DESCRIPTIONS.get(done.kind, done.kind)
        if state in ("stopping", "destroyed"):
            # Whatever the call returned, the workspace went away under it.
            self._reply(done.reply_to, error=Conflict(f"workspace {self._id} was destroyed while the {what} ran"))
        elif done.error is None:
            self._reply(done.reply_to, done.value)
        elif state == "failed":
            assert self._entry is not None
            error = self._entry.record.error
            self._reply(done.reply_to, error=Conflict(f"workspace {self._id} failed while the {what} ran: {error}"))
        else:
            self._reply(done.reply_to, error=done.error)

    # ------------------------------------------------------------------ the warm pool

    def _adopt(self, message: Adopt) -> None:
        """Turn this pool member into the workspace a create asked for."""
        entry = self._entry
        if entry is None or not entry.pooled or entry.record.state != "ready":
            # It failed or went away after it was claimed: serve the request cold.
            cold = CreateWorkspace(message.reply_to, message.args, cold=True, fallback_from=message.fallback_from)
            if not self._ctx.registry.tell(provider_name(message.provider), cold):
                self._reply(message.reply_to, error=ProviderUnavailable(f"provider {message.provider} is restarting"))
            return
        record = entry.record
        try:
            wanted = resolve_create(
                self._ctx.settings, message.args, workspace_id=self._id, provider=record.provider,
                runtime=record.runtime, now=time.time(), fallback_from=message.fallback_from,
                request=message.reply_to.key,
            )  # fmt: skip
        except WorkspaceError as exc:  # validated before the claim; kept for safety
            self._reply(message.reply_to, error=exc)
            return
        adopted = adopt(entry, wanted)
        self._ctx.statelog.put_workspace(adopted, reason="claimed from the warm pool")
        self._entry = adopted
        log.info("workspace %s is ready (claimed from the warm pool)", self._id)
        self._reply(message.reply_to, adopted.record)
        self._ctx.registry.tell(POOL, Refill())  # after the reply: the refill's work must not delay the claim

    # ------------------------------------------------------------------ expiry

    def _extend(self, message: Extend) -> None:
        state = self._state()
        if state != "ready" or self._entry is None or self._entry.record.persistent:
            why = "persistent: it never expires" if state == "ready" else f"{state}, not ready"
            self._reply(message.reply_to, error=Conflict(f"workspace {self._id} is {why}"))
            return
        expires_at = time.time() + message.args.ttl_seconds
        self._persist("ready", reason=f"extended by {message.args.ttl_seconds:g} s", expires_at=expires_at)
        self._reply(message.reply_to, self._entry.record)
        self._ctx.registry.tell(provider_name(self._entry.record.provider), Resync())  # renew the backend's clock

    # ------------------------------------------------------------------ what the backend reports

    def _container_event(self, event: ContainerEvent) -> None:
        if self._entry is None or self._state() not in ("ready", "creating"):
            return  # it is being destroyed, or has already ended
        record = self._entry.record
        limit = f"{record.memory_bytes >> 20} MiB"
        if event.kind == "oom":
            if record.state == "ready":
                log.warning("workspace %s: %s (%s)", self._id, event.detail, limit)
                self._persist(
                    "ready", error=record.error, reason=f"oom: {event.detail} ({limit})", oom_kills=record.oom_kills + 1
                )
            return
        detail = event.detail.replace("ran out of memory", f"ran out of memory ({limit})")
        self._persist("failed", error=detail, reason=event.kind)
        self._end()
        if self._entry.handle:
            self._provider().commands.cancel(self._entry.handle)

    # ------------------------------------------------------------------ destroy

    def _destroy(self, reply_to: ReplyTo | None, reason: str | None = None) -> None:
        state = self._state()
        if state == "destroyed":
            self._reply(reply_to, {})
            return
        unavailable = self._unavailable()
        if unavailable is not None and reply_to is not None and not self._destroy_waiters:
            # A client's destroy changes nothing while the backend is down: it is retried.
            self._reply(reply_to, error=unavailable)
            return
        self._destroy_waiters.append(reply_to)
        self._destroy_reason = reason or self._destroy_reason
        if state in ("ready", "failed", "unknown") or self._inflight == 0:
            self._begin_destroy()
        # a boot or a destroy in flight: answered when that ends

    def _begin_destroy(self) -> None:
        if self._entry is None:
            self._destroy_waiters_done()
            return
        if self._entry.pooled:
            pool = self._pool()
            if pool is not None:
                pool.remove(self._id)  # nobody may claim it any more
        if self._entry.record.state == "creating":  # a roll back: the create never answered
            self._entry = msgspec.structs.replace(self._entry, request="")
        self._persist("stopping", error=self._entry.record.error, reason=self._destroy_reason)
        provider, handle, workspace_id = self._provider(), self._entry.handle, self._id

        def destroy() -> None:
            # No handle yet (the create never answered, e.g. the runtime stopped meanwhile):
            # whatever the backend made for this workspace is found by its labels.
            found = provider.inventory().get(workspace_id) if not handle else None
            target = handle or (found.handle if found is not None else "")
            if target:
                provider.destroy(target)

        self._run("destroy", None, destroy)

    def _destroyed(self, done: Completed) -> None:
        if isinstance(done.error, WorkspaceError):
            self._persist("failed", error=f"destroy failed: {done.error.message}", reason="destroy failed")
            self._destroy_waiters_done(done.error)
            return
        self._persist("destroyed")
        self._end()
        self._destroy_waiters_done()

    def _destroy_waiters_done(self, error: WorkspaceError | None = None) -> None:
        waiters, self._destroy_waiters = self._destroy_waiters, []
        for reply_to in waiters:
            self._reply(reply_to, {}, error)

    def _completed(self, done: Completed) -> None:
        if done.kind == "boot":
            self._booted(done)
        elif done.kind == "destroy":
            self._destroyed(done)
        else:
            self._call_done(done)
