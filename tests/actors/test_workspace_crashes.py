"""Workspace actors crash alone: the workspaces' own supervisor contains them.

With the workspace actors under the root (as they once were), four workspace crashes
within ten seconds exceeded the root's intensity and stopped the providers, the pool
and the reaper with them. Under their dynamic supervisor, each workspace has its own
restart intensity, and the rest of the tree never hears of their crashes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.names import POOL, REAPER, SAMPLER, WORKSPACES, provider_name
from actors.supervision import Sync
from actors.workspace import WorkspaceActor
from runtime.app import Runtime
from runtime.errors import Conflict, InternalError
from runtime.messages import Extend
from runtime.wire import Client, Subscriber
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import wait_for_event

STEADY = (provider_name("gvisor"), POOL, REAPER, SAMPLER, WORKSPACES)


@pytest.fixture
def runtime(make_settings: MakeSettings) -> Iterator[Runtime]:
    with Runtime(make_settings(max_concurrent=20), providers={"gvisor": FakeProvider()}) as started:
        yield started


def urns(runtime: Runtime) -> dict[str, str]:
    ctx = runtime.context
    assert ctx is not None
    found = {}
    for name in STEADY:
        ref = ctx.registry.get(name)
        assert ref is not None, f"{name} is not running"
        found[name] = ref.actor_urn
    return found


def crash_on_extend(monkeypatch: pytest.MonkeyPatch, victims: set[str]) -> None:
    real = WorkspaceActor._extend

    def extend(self: WorkspaceActor, message: Extend) -> None:
        if message.args.workspace_id in victims:
            raise RuntimeError(f"injected into {message.args.workspace_id}")
        real(self, message)

    monkeypatch.setattr(WorkspaceActor, "_extend", extend)


def crash(client: Client, crashes: Subscriber, workspace_id: str) -> dict[str, Any]:
    with pytest.raises(InternalError, match="crashed handling this request"):
        client.extend(workspace_id, 60)
    return wait_for_event(
        crashes, lambda event: event["type"] == "actor.crashed" and event["workspace_id"] == workspace_id
    )


def test_a_burst_of_workspace_crashes_leaves_the_providers_pool_reaper_and_sampler_untouched(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runtime.client(timeout_s=10) as client, runtime.subscribe(("actor",)) as crashes:
        records = [client.create() for _ in range(6)]
        before = urns(runtime)
        crash_on_extend(monkeypatch, {record.id for record in records})
        for record in records:  # six crashes within seconds: twice the root's intensity
            event = crash(client, crashes, record.id)
            assert event["restarted"] is True and "injected" in event["reason"]
        supervisor = runtime.supervisor
        assert supervisor is not None
        supervisor.ask(Sync(), timeout=5)
        assert urns(runtime) == before  # not one of them was restarted
        assert runtime.failure is None and not runtime.wait_failed(0)
        monkeypatch.undo()
        for record in records:  # each workspace's new actor serves it
            assert client.exec(record.id, ["true"]).exit_code == 0
            assert client.extend(record.id, 60).state == "ready"
            client.destroy(record.id)


def test_a_workspace_whose_actor_crashes_in_a_loop_is_given_up_on_and_failed_alone(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runtime.client(timeout_s=10) as client, runtime.subscribe(("actor", "workspace")) as events:
        victim, bystander = client.create(), client.create()
        before = urns(runtime)
        crash_on_extend(monkeypatch, {victim.id})
        outcomes = [crash(client, events, victim.id)["restarted"] for _ in range(4)]
        assert outcomes == [True, True, True, False]  # three restarts within 10 s, then no more
        failed = wait_for_event(events, lambda e: e.get("workspace_id") == victim.id and e.get("state") == "failed")
        assert failed["reason"] == "its actor was given up on"
        record = client.get(victim.id)
        assert record.state == "failed"
        assert record.error is not None and "its actor crashed 4 times within 10 s" in record.error
        assert "injected" in record.error
        with pytest.raises(Conflict, match="is failed"):
            client.exec(victim.id, ["true"])
        assert urns(runtime) == before and runtime.failure is None
        assert client.exec(bystander.id, ["echo", "fine"]).exit_code == 0
        assert client.stats()["capacity"]["active"] == 1  # the failed one gave its slot back
        client.destroy(victim.id)  # a failed workspace is still destroyed on request
        client.destroy(bystander.id)
        assert [record.state for record in client.list(state="destroyed")] == ["destroyed", "destroyed"]
