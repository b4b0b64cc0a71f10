"""Reconciliation: planning from records and inventory, and converging a real state log with a fake provider."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.errors import ProviderUnavailable
from runtime.messages import BackendState, StoredWorkspace, WorkspaceRecord, WorkspaceSpec, WorkspaceStateChanged
from runtime.state.reconcile import converge, interrupted_reason, plan, reconcile_at_start
from runtime.state.statelog import StateLog
from tests.fakes import FakeProvider


def stored(
    workspace_id: str,
    state: str = "ready",
    *,
    provider: str = "gvisor",
    handle: str | None = None,
    request: str = "",
    error: str | None = None,
) -> StoredWorkspace:
    record = WorkspaceRecord(
        id=workspace_id,
        state=state,  # type: ignore[arg-type]
        provider=provider,
        runtime="runsc",
        image="img",
        cpu=1.0,
        memory_bytes=64 << 20,
        disk_bytes=1 << 30,
        labels={},
        persistent=False,
        created_at=1.0,
        expires_at=None,
        error=error,
    )
    spec = WorkspaceSpec(
        workspace_id=workspace_id, image="img", cpu=1.0, memory_bytes=64 << 20, disk_bytes=1 << 30, env={}, labels={}
    )
    return StoredWorkspace(
        record=record, spec=spec, handle=f"fake-{workspace_id}" if handle is None else handle, request=request
    )


def backend(workspace_id: str, running: bool = True, detail: str = "") -> BackendState:
    return BackendState(workspace_id=workspace_id, handle=f"fake-{workspace_id}", running=running, detail=detail)


def place(provider: FakeProvider, workspace_id: str) -> None:
    """A container of this runtime's for ``workspace_id`` on the fake provider."""
    with provider.lock:
        provider.workspaces[f"fake-{workspace_id}"] = stored(workspace_id).spec


@dataclass
class StubbornProvider(FakeProvider):
    """A fake provider that cannot remove some of its workspaces."""

    refuse: set[str] = field(default_factory=set)
    destroyed: list[str] = field(default_factory=list)

    def destroy(self, handle: str) -> None:
        self.destroyed.append(handle)
        if handle in self.refuse:
            raise ProviderUnavailable(f"cannot remove {handle}: the daemon is busy")
        super().destroy(handle)


@pytest.fixture
def statelog(tmp_path: Path) -> Iterator[StateLog]:
    log = StateLog(tmp_path / "state")
    yield log
    log.close()


def changes(statelog: StateLog, after: int = 0) -> dict[str, WorkspaceStateChanged]:
    """The last state change of each workspace logged after ``after``."""
    found: dict[str, WorkspaceStateChanged] = {}
    for event in statelog.events(after):
        assert isinstance(event, WorkspaceStateChanged)
        found[event.workspace_id] = event
    return found


# ---------------------------------------------------------------------- plan


def test_ready_records_whose_workspace_runs_are_adopted_and_nothing_else() -> None:
    result = plan("gvisor", [stored("ws_a"), stored("ws_b")], {"ws_a": backend("ws_a"), "ws_b": backend("ws_b")})
    assert result.adopted == ["ws_a", "ws_b"]
    assert (result.vanished, result.interrupted, result.orphans) == ([], [], [])


def test_ready_records_whose_workspace_is_gone_or_stopped_vanish_with_the_reason() -> None:
    gone, died, stopped = stored("ws_gone"), stored("ws_died"), stored("ws_stopped")
    inventory = {
        "ws_died": backend("ws_died", running=False, detail="the workspace's container exited with code 137"),
        "ws_stopped": backend("ws_stopped", running=False),
    }
    result = plan("gvisor", [gone, died, stopped], inventory)
    assert result.vanished == [
        (gone, "the workspace's container no longer exists"),
        (died, "the workspace's container exited with code 137"),
        (stopped, "the workspace's container is not running"),
    ]
    assert (result.adopted, result.interrupted, result.orphans) == ([], [], [])


def test_records_left_creating_or_stopping_are_interrupted_whether_or_not_their_workspace_exists() -> None:
    creating, stopping, bare = stored("ws_c", "creating"), stored("ws_s", "stopping"), stored("ws_x", "creating")
    result = plan("gvisor", [creating, stopping, bare], {"ws_c": backend("ws_c"), "ws_s": backend("ws_s")})
    assert result.interrupted == [creating, stopping, bare]
    assert (result.adopted, result.vanished, result.orphans) == ([], [], [])


def test_labelled_workspaces_without_a_live_record_are_orphans() -> None:
    inventory = {
        "ws_unknown": backend("ws_unknown"),
        "ws_destroyed": backend("ws_destroyed", running=False),
        "ws_failed": backend("ws_failed", running=False),
    }
    entries = [stored("ws_destroyed", "destroyed"), stored("ws_failed", "failed")]
    result = plan("gvisor", entries, inventory)
    assert result.orphans == [inventory["ws_unknown"], inventory["ws_destroyed"]]
    # a failed record keeps its container for the reaper or a destroy: neither orphan nor vanished
    assert (result.adopted, result.vanished, result.interrupted) == ([], [], [])


def test_records_of_other_providers_are_ignored() -> None:
    elsewhere = [stored("ws_e2b", provider="e2b"), stored("ws_e2b_creating", "creating", provider="e2b")]
    result = plan("gvisor", [*elsewhere, stored("ws_mine")], {"ws_mine": backend("ws_mine")})
    assert result.adopted == ["ws_mine"]
    assert (result.vanished, result.interrupted, result.orphans) == ([], [], [])
    # a record elsewhere does not make this provider's container of the same id live
    assert plan("gvisor", elsewhere, {"ws_e2b": backend("ws_e2b")}).orphans == [backend("ws_e2b")]


def test_the_summary_and_the_interrupted_reasons_read_as_sentences() -> None:
    result = plan(
        "gvisor",
        [stored("ws_a"), stored("ws_b"), stored("ws_c", "creating")],
        {"ws_a": backend("ws_a"), "ws_o": backend("ws_o")},
    )
    assert result.summary() == (
        "1 adopted, 1 failed (gone), 1 interrupted create/destroy finished, 1 orphan(s) removed"
    )
    assert interrupted_reason("creating") == (
        "its create was interrupted (the runtime or its actor stopped); rolled back"
    )
    assert interrupted_reason("stopping") == (
        "its destroy was interrupted (the runtime or its actor stopped); finished"
    )


# ---------------------------------------------------------------------- converge


def test_converge_fails_vanished_rolls_back_creates_finishes_destroys_and_removes_orphans(
    statelog: StateLog,
) -> None:
    provider = FakeProvider()
    for workspace_id in ("ws_kept", "ws_died", "ws_creating", "ws_no_handle", "ws_stopping", "ws_orphan"):
        place(provider, workspace_id)
    provider.stopped.add("fake-ws_died")
    entries = [
        stored("ws_kept"),
        stored("ws_gone"),
        stored("ws_died"),
        stored("ws_creating", "creating", request="client:req-1"),
        stored("ws_no_handle", "creating", handle="", request="client:req-2"),  # found through the inventory
        stored("ws_never_made", "creating", handle="", request="client:req-3"),
        stored("ws_stopping", "stopping", error="expired"),
    ]
    for entry in entries:
        statelog.put_workspace(entry)
    assert statelog.created_by("client:req-1") is not None
    before = statelog.last_seq

    inventory = provider.inventory()
    converge(plan("gvisor", statelog.workspaces(), inventory), statelog, provider, inventory)

    def state(workspace_id: str) -> tuple[str, str | None]:
        found = statelog.get(workspace_id)
        assert found is not None
        return found.record.state, found.record.error

    assert state("ws_kept") == ("ready", None)
    assert state("ws_gone") == ("failed", "the workspace's container no longer exists")
    assert state("ws_died") == ("failed", "the workspace's container exited with code 1")
    for rolled_back in ("ws_creating", "ws_no_handle", "ws_never_made"):
        assert state(rolled_back) == ("destroyed", None)
    assert state("ws_stopping") == ("destroyed", "expired")  # a finished destroy keeps its cause
    assert set(provider.inventory()) == {"ws_kept", "ws_died"}
    assert statelog.get("ws_orphan") is None  # removed, never recorded

    for request in ("client:req-1", "client:req-2", "client:req-3"):
        assert statelog.created_by(request) is None  # a retry creates anew
    rolled = statelog.get("ws_creating")
    assert rolled is not None and rolled.request == ""

    logged = changes(statelog, before)
    assert set(logged) == {"ws_gone", "ws_died", "ws_creating", "ws_no_handle", "ws_never_made", "ws_stopping"}
    assert logged["ws_gone"].reason == "reconciled at start: the workspace's container no longer exists"
    assert logged["ws_gone"].state == "failed"
    assert logged["ws_died"].reason == "reconciled at start: the workspace's container exited with code 1"
    assert logged["ws_creating"].reason == interrupted_reason("creating")
    assert logged["ws_stopping"].reason == interrupted_reason("stopping")
    assert logged["ws_stopping"].record.state == "destroyed"
    assert [event.seq for event in statelog.events(before)] == list(range(before + 1, statelog.last_seq + 1))


def test_a_destroy_that_fails_leaves_the_record_failed_with_the_reason(statelog: StateLog) -> None:
    provider = StubbornProvider(refuse={"fake-ws_creating", "fake-ws_stopping", "fake-ws_orphan"})
    for workspace_id in ("ws_creating", "ws_stopping", "ws_orphan"):
        place(provider, workspace_id)
    statelog.put_workspace(stored("ws_creating", "creating", request="client:req-1"))
    statelog.put_workspace(stored("ws_stopping", "stopping"))
    before = statelog.last_seq

    inventory = provider.inventory()
    converge(plan("gvisor", statelog.workspaces(), inventory), statelog, provider, inventory)

    assert sorted(provider.destroyed) == ["fake-ws_creating", "fake-ws_orphan", "fake-ws_stopping"]
    for workspace_id, state in (("ws_creating", "creating"), ("ws_stopping", "stopping")):
        entry = statelog.get(workspace_id)
        assert entry is not None
        assert entry.record.state == "failed"
        assert entry.record.error == f"destroy failed: cannot remove fake-{workspace_id}: the daemon is busy"
        assert changes(statelog, before)[workspace_id].reason == interrupted_reason(state)
    assert statelog.created_by("client:req-1") is None  # still rolled back as far as a retry is concerned
    assert "fake-ws_orphan" in provider.workspaces  # left for a later sweep, with no record
    assert statelog.get("ws_orphan") is None


def test_converging_an_empty_plan_writes_nothing(statelog: StateLog) -> None:
    provider = FakeProvider()
    place(provider, "ws_kept")
    statelog.put_workspace(stored("ws_kept"))
    before = statelog.last_seq
    inventory = provider.inventory()
    converge(plan("gvisor", statelog.workspaces(), inventory), statelog, provider, inventory)
    assert statelog.last_seq == before
    assert set(provider.workspaces) == {"fake-ws_kept"}


# ---------------------------------------------------------------------- reconcile_at_start


def test_at_start_a_provider_that_answers_is_reconciled_and_one_that_is_down_is_returned(
    statelog: StateLog,
) -> None:
    up, down = FakeProvider(name="gvisor"), FakeProvider(name="e2b", healthy=False)
    place(up, "ws_orphan")
    place(down, "ws_e2b_orphan")
    statelog.put_workspace(stored("ws_gone"))
    statelog.put_workspace(stored("ws_e2b_gone", provider="e2b"))
    statelog.put_workspace(stored("ws_e2b_creating", "creating", provider="e2b"))
    before = statelog.last_seq

    assert reconcile_at_start(statelog, {"gvisor": up, "e2b": down}) == {"e2b"}

    logged = changes(statelog, before)
    assert set(logged) == {"ws_gone"}
    assert logged["ws_gone"].state == "failed"
    assert logged["ws_gone"].reason == "reconciled at start: the workspace's container no longer exists"
    assert up.workspaces == {}  # its orphan removed
    assert set(down.workspaces) == {"fake-ws_e2b_orphan"}  # nothing touched until it answers
    for workspace_id, state in (("ws_e2b_gone", "ready"), ("ws_e2b_creating", "creating")):
        entry = statelog.get(workspace_id)
        assert entry is not None and entry.record.state == state


def test_a_provider_whose_listing_raises_anything_is_returned_unreconciled(statelog: StateLog) -> None:
    class Broken(FakeProvider):
        def inventory(self) -> dict[str, BackendState]:
            raise RuntimeError("the SDK blew up")

    statelog.put_workspace(stored("ws_a"))
    assert reconcile_at_start(statelog, {"gvisor": Broken()}) == {"gvisor"}
    entry = statelog.get("ws_a")
    assert entry is not None and entry.record.state == "ready"
    assert statelog.last_seq == 1


def test_at_start_with_every_provider_up_nothing_is_returned(statelog: StateLog) -> None:
    gvisor, e2b = FakeProvider(name="gvisor"), FakeProvider(name="e2b")
    place(gvisor, "ws_a")
    place(e2b, "ws_b")
    statelog.put_workspace(stored("ws_a"))
    statelog.put_workspace(stored("ws_b", "stopping", provider="e2b"))
    assert reconcile_at_start(statelog, {"gvisor": gvisor, "e2b": e2b}) == set()
    kept, finished = statelog.get("ws_a"), statelog.get("ws_b")
    assert kept is not None and kept.record.state == "ready"
    assert finished is not None and finished.record.state == "destroyed"
    assert set(gvisor.workspaces) == {"fake-ws_a"} and e2b.workspaces == {}
    assert changes(statelog, 2)["ws_b"].reason == interrupted_reason("stopping")
