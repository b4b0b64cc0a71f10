"""Crash safety on a fake provider: start-up reconciliation, crashed actors, a provider back up."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest

from actors.workspace import WorkspaceActor
from runtime.app import Runtime
from runtime.errors import InternalError, ProviderUnavailable
from runtime.messages import BackendState, StoredWorkspace, WorkspaceSpec
from runtime.state.statelog import StateLog
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event, workspace_event


def leave_as(state_dir: Path, workspace_id: str, state: str) -> StoredWorkspace:
    """Rewrite a stored workspace as a crashed runtime would have left it."""
    log = StateLog(state_dir / "state")
    try:
        entry = log.get(workspace_id)
        assert entry is not None
        changed = msgspec.structs.replace(entry, record=msgspec.structs.replace(entry.record, state=state))
        log.put_workspace(changed, reason="left by the test")
        return changed
    finally:
        log.close()


def plant(provider: FakeProvider, workspace_id: str) -> str:
    """A container of this runtime's with no record, as a crash between create and record leaves."""
    handle = f"fake-{workspace_id}"
    with provider.lock:
        provider.workspaces[handle] = WorkspaceSpec(
            workspace_id=workspace_id, image="img", cpu=1, memory_bytes=1, disk_bytes=1, env={}, labels={}
        )
    return handle


def test_start_up_converges_the_log_with_the_provider_before_serving(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    settings = make_settings()
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        kept, gone, died, half_created, half_destroyed = (client.create() for _ in range(5))
    provider.destroy(f"fake-{gone.id}")
    provider.stopped.add(f"fake-{died.id}")
    leave_as(settings.state_dir, half_created.id, "creating")
    leave_as(settings.state_dir, half_destroyed.id, "stopping")
    orphan = plant(provider, "ws_orphan")

    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        # No waiting: start() returns once the two sides agree.
        assert client.get(kept.id).state == "ready"
        assert client.exec(kept.id, ["true"]).exit_code == 0
        vanished = client.get(gone.id)
        assert (vanished.state, vanished.error) == ("failed", "the workspace's container no longer exists")
        stopped = client.get(died.id)
        assert stopped.state == "failed" and "exited with code 1" in (stopped.error or "")
        assert client.get(half_created.id).state == "destroyed"
        assert client.get(half_destroyed.id).state == "destroyed"
        assert set(provider.inventory()) == {kept.id, died.id}  # rolled back, finished, orphan removed
        assert orphan not in provider.workspaces
        assert client.stats()["workspaces"] == 1


def test_a_crashed_workspace_actor_is_restarted_from_the_log_and_others_carry_on(
    fake_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_extend = WorkspaceActor._extend
    with fake_runtime.subscribe(("actor",)) as crashes, fake_runtime.client(timeout_s=10) as client:
        victim, bystander = client.create(), client.create()

        def extend_or_crash(self: WorkspaceActor, message: object) -> None:
            if self._id == victim.id:
                raise RuntimeError("injected")
            real_extend(self, message)  # type: ignore[arg-type]

        monkeypatch.setattr(WorkspaceActor, "_extend", extend_or_crash)
        with pytest.raises(InternalError, match="crashed"):
            client.extend(victim.id, 60)
        crash = wait_for_event(crashes, lambda event: event["type"] == "actor.crashed")
        assert crash["workspace_id"] == victim.id and crash["restarted"] is True
        assert "injected" in crash["reason"]
        assert client.exec(bystander.id, ["true"]).exit_code == 0
        assert client.extend(bystander.id, 60).expires_at is not None
        assert client.exec(victim.id, ["echo", "back"]).stdout == b"echo back"
        assert client.get(victim.id).state == "ready"


def test_a_create_whose_actor_crashed_is_rolled_back(
    fake_runtime: Runtime, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: WorkspaceActor, done: object) -> None:
        raise RuntimeError("injected after the container was made")

    monkeypatch.setattr(WorkspaceActor, "_booted", crash)
    with fake_runtime.subscribe(("workspace",)) as events, fake_runtime.client(timeout_s=10) as client:
        with pytest.raises(InternalError, match="crashed"):
            client.create()
        created = wait_for_event(events, lambda event: event["state"] == "creating")
        workspace_id = created["workspace_id"]
        rolling_back = wait_for_event(events, workspace_event(workspace_id, state="stopping"))
        assert "rolled back" in rolling_back["reason"]
        wait_for_event(events, workspace_event(workspace_id, state="destroyed"))
        assert fake_provider.workspaces == {}
        assert client.stats()["workspaces"] == 0


def test_a_provider_down_at_start_is_reconciled_once_it_answers(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    settings = make_settings(health_interval_s=0.1)
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        alive, gone, half_created = client.create(), client.create(), client.create()
    provider.destroy(f"fake-{gone.id}")
    leave_as(settings.state_dir, half_created.id, "creating")
    provider.healthy = False

    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        with pytest.raises(ProviderUnavailable) as refused:
            client.create()
        assert refused.value.retryable
        assert client.get(gone.id).state == "ready"  # nobody can tell yet
        provider.healthy = True
        poll_until(lambda: client.get(gone.id).state == "failed" and client.get(half_created.id).state == "destroyed")
        assert client.get(alive.id).state == "ready"
        assert set(provider.inventory()) == {alive.id}


def test_a_workspace_that_becomes_ready_during_a_health_check_is_not_taken_for_vanished(
    make_settings: MakeSettings,
) -> None:
    provider = FakeProvider()
    real_inventory = provider.inventory
    listed, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_inventory() -> dict[str, BackendState]:
        found = real_inventory()
        calls.append(1)
        if len(calls) == 1:  # the first check's listing misses what is created meanwhile
            listed.set()
            release.wait(10)
        return found

    settings = make_settings(health_interval_s=0.05)
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        provider.inventory = slow_inventory  # type: ignore[method-assign]
        assert listed.wait(10)
        record = client.create()
        release.set()
        poll_until(lambda: len(calls) >= 3)
        assert client.get(record.id).state == "ready"


def test_calls_on_a_workspace_whose_provider_is_down_are_refused_at_once_and_change_nothing(
    make_settings: MakeSettings,
) -> None:
    provider = FakeProvider()
    settings = make_settings(health_interval_s=0.05)
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        record = client.create()
        provider.healthy = False
        poll_until(lambda: not client.providers()[0].healthy)
        for call in (lambda: client.exec(record.id, ["true"]), lambda: client.destroy(record.id)):
            with pytest.raises(ProviderUnavailable) as refused:
                call()
            assert refused.value.retryable and "unhealthy" in refused.value.message
        assert client.get(record.id).state == "ready"
        provider.healthy = True
        poll_until(lambda: client.providers()[0].healthy)
        assert client.exec(record.id, ["true"]).exit_code == 0
        client.destroy(record.id)
