"""The supervision tree of one runtime, and what it reports of crashes.

::

    Supervisor (root: one_for_one, 3 restarts in 10 s, then the runtime exits)
    ├── workspaces        DynamicSupervisor: one WorkspaceActor per workspace, on demand,
    │                     each restarted on its own intensity (3 in 10 s, then given up on)
    ├── provider:<name>   one ProviderActor per provider
    ├── pool              PoolActor
    ├── reaper            ReaperActor
    ├── sampler           SamplerActor
    └── credentials       CredentialsActor (the one writer of GitHub App credentials)

Children start in this order and stop in reverse: the workspace actors stop last, after
everything that sends them work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from actors.context import ActorContext
from actors.credentials import credentials_child
from actors.names import WORKSPACE_PREFIX, WORKSPACES
from actors.pool import pool_child
from actors.provider import provider_child
from actors.reaper import reaper_child
from actors.release import give_up
from actors.sampler import sampler_child
from actors.supervision import ChildSpec
from actors.supervisor import CrashReport, DynamicSupervisor, Supervisor
from actors.workspace import workspace_child
from runtime.messages import ActorCrashed

__all__ = ["INTENSITY", "PERIOD_S", "crash_reporter", "start_tree", "workspaces_child"]

INTENSITY = 3
PERIOD_S = 10.0


def crash_reporter(ctx: ActorContext) -> CrashReport:
    """Publishes every crash as an ``actor.crashed`` event (with the workspace, if it owned one)."""

    def report(name: str, reason: str, restarted: bool) -> None:
        workspace_id = name.removeprefix(WORKSPACE_PREFIX) if name.startswith(WORKSPACE_PREFIX) else None
        ctx.publish(ActorCrashed(actor=name, reason=reason, restarted=restarted, workspace_id=workspace_id))

    return report


def workspaces_child(ctx: ActorContext, *, intensity: int = INTENSITY, period_s: float = PERIOD_S) -> ChildSpec:
    """The dynamic supervisor of the workspace actors (permanent)."""

    def start(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        return DynamicSupervisor.start(
            supervisor,
            WORKSPACES,
            ctx.registry,
            prefix=WORKSPACE_PREFIX,
            spec_for=lambda name: workspace_child(ctx, name),
            intensity=intensity,
            period_s=period_s,
            on_crash=crash_reporter(ctx),
            on_give_up=lambda name, reason: give_up(ctx, name, reason),
        )

    return ChildSpec(WORKSPACES, start)


def start_tree(ctx: ActorContext, on_escalate: Callable[[str], None]) -> pykka.ActorRef[Any]:
    """Start the whole tree; return the root (its children are started when this returns)."""
    children = [workspaces_child(ctx)]
    children += [provider_child(ctx, name) for name in ctx.providers]
    children += [pool_child(ctx), reaper_child(ctx), sampler_child(ctx), credentials_child(ctx)]
    return Supervisor.start(
        ctx.registry,
        children,
        intensity=INTENSITY,
        period_s=PERIOD_S,
        on_escalate=on_escalate,
        on_crash=crash_reporter(ctx),
    )
