"""ProviderActor: one per provider; admits creates and keeps the provider's health.

Admission is quick and never blocks on the backend: check health, resolve and validate
the request, take a capacity slot, then hand the new entry to a fresh WorkspaceActor
(started by the Supervisor) which does the slow part.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pykka

from actors.context import ActorContext
from actors.supervision import ChildActor, ChildSpec, StartChild
from actors.workspace import workspace_child
from runtime.errors import ProviderUnavailable, WorkspaceError
from runtime.messages import BootWorkspace, CreateWorkspace
from runtime.outbox import Outbox
from runtime.providers.base import ProviderStatus
from runtime.resources import new_workspace_id, resolve_create

__all__ = ["ProviderActor", "provider_child", "provider_name"]

log = logging.getLogger(__name__)


def provider_name(provider: str) -> str:
    """The registry name of a provider's actor."""
    return f"provider:{provider}"


def provider_child(ctx: ActorContext, provider: str) -> ChildSpec:
    """The child spec of the ProviderActor for ``provider`` (permanent)."""

    def start(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        return ProviderActor.start(supervisor, ctx, provider)

    return ChildSpec(provider_name(provider), start, "permanent")


class ProviderActor(ChildActor):
    """Admission and health for one provider.

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

    def started(self) -> None:
        self._outbox = self._ctx.outbox()
        self._check()

    def stopped(self) -> None:
        if self._outbox is not None:
            self._outbox.close()

    def handle(self, message: Any) -> Any:
        if isinstance(message, CreateWorkspace):
            self._create(message)
        else:
            super().handle(message)

    def _check(self) -> None:
        probe = self._provider.probe()
        status = ProviderStatus(
            name=self._provider_name,
            healthy=probe.healthy,
            checked_at=time.time(),
            detail=probe.detail,
            runtime=probe.runtime,
        )
        if self._ctx.board.update(status):
            level = logging.INFO if probe.healthy else logging.WARNING
            log.log(
                level,
                "provider %s is %s (runtime %s)%s",
                self._provider_name,
                "healthy" if probe.healthy else "unhealthy",
                probe.runtime,
                f": {probe.detail}" if probe.detail else "",
            )

    def _create(self, message: CreateWorkspace) -> None:
        assert self._outbox is not None
        try:
            status = self._ctx.board.get(self._provider_name)
            if status is None or not status.healthy:
                detail = status.detail if status is not None else "not checked yet"
                raise ProviderUnavailable(f"provider {self._provider_name} is unhealthy: {detail}")
            workspace_id = new_workspace_id()
            entry = resolve_create(
                self._ctx.settings,
                message.args,
                workspace_id=workspace_id,
                provider=self._provider_name,
                runtime=status.runtime,
                now=time.time(),
            )
            self._ctx.admission.reserve(workspace_id)
        except WorkspaceError as exc:
            self._outbox.fail(message.reply_to, exc)
            return
        boot = BootWorkspace(message.reply_to, entry)
        self.supervisor.tell(StartChild(workspace_child(self._ctx, workspace_id), then=boot))
