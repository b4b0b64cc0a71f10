"""release() and give_up() directly, on a hand-wired ActorContext."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest

from actors.names import POOL
from actors.release import give_up, release
from runtime.capacity import Pool
from runtime.messages import Refill, State, StoredWorkspace, WorkspaceStateChanged
from tests.actors.test_context import Harness, MakeHarness, Received, harnesses, stored
from tests.conftest import MakeSettings

REASON = "its actor crashed 3 times within 10 s: RuntimeError('boom')"


@pytest.fixture
def make_harness(tmp_path: Path, make_settings: MakeSettings) -> Iterator[MakeHarness]:
    with harnesses(tmp_path, make_settings) as make:
        yield make


def occupy(harness: Harness, entry: StoredWorkspace) -> None:
    """What a live workspace holds: a slot, a measurement and a streamed process."""
    workspace_id = entry.record.id
    harness.ctx.boards.admission.reserve(workspace_id)
    harness.ctx.boards.usage.update(workspace_id, cpu_pct=12.0, memory_bytes=1 << 20)
    harness.ctx.processes.register(workspace_id, ["sleep", "60"], stdin_open=False)


def holds_nothing(harness: Harness, workspace_id: str) -> bool:
    return harness.ctx.boards.usage.get(workspace_id) is None and harness.ctx.processes.list(workspace_id) == []


def assert_told(ref: pykka.ActorRef[Any], received: Received, expected: list[Any]) -> None:
    """``ref`` was told exactly ``expected`` before now: a marker told now comes right after (mailboxes keep order)."""
    ref.tell("marker")
    assert received.wait_for(len(expected) + 1) == [*expected, "marker"]


# ---------------------------------------------------------------------- release


def test_release_frees_the_slot_usage_and_processes_of_that_workspace_only(make_harness: MakeHarness) -> None:
    harness = make_harness(limit=2)
    pool, told = harness.recorder(POOL)
    gone, kept = stored("ws_gone"), stored("ws_kept")
    occupy(harness, gone)
    occupy(harness, kept)
    release(harness.ctx, gone)
    admission = harness.ctx.boards.admission
    assert admission.count() == 1
    admission.reserve("ws_next")  # the freed slot is taken again (the limit is 2)
    assert holds_nothing(harness, "ws_gone")
    assert harness.ctx.boards.usage.get("ws_kept") is not None
    assert len(harness.ctx.processes.list("ws_kept")) == 1
    release(harness.ctx, gone)  # twice is harmless
    assert admission.count() == 2
    assert_told(pool, told, [])  # not a pool member: no refill


def test_releasing_pool_members_takes_them_out_of_their_pool_and_asks_for_a_refill_each(
    make_harness: MakeHarness,
) -> None:
    members = Pool(3)
    harness = make_harness(pools={"gvisor": members})
    pool, told = harness.recorder(POOL)
    members.ready("ws_ready_a")
    members.ready("ws_ready_b")
    members.booting("ws_booting")
    for workspace_id, state in (("ws_ready_a", "destroyed"), ("ws_booting", "failed")):
        entry = stored(workspace_id, state, pooled=True)
        occupy(harness, entry)
        release(harness.ctx, entry)
        assert holds_nothing(harness, workspace_id)
    stats = members.stats()
    assert (stats.size, stats.booting) == (1, 0)
    assert members.claim() == "ws_ready_b"
    assert harness.ctx.boards.admission.count() == 0
    assert_told(pool, told, [Refill(), Refill()])


def test_a_pool_member_is_released_even_without_a_pool_or_a_pool_actor(make_harness: MakeHarness) -> None:
    harness = make_harness(pools={"e2b": Pool(1)})  # the member's provider keeps no pool any more
    entry = stored("ws_member", pooled=True)
    occupy(harness, entry)
    release(harness.ctx, entry)  # and no pool actor is registered: the refill request goes nowhere
    assert harness.ctx.boards.admission.count() == 0
    assert holds_nothing(harness, "ws_member")


# ---------------------------------------------------------------------- give_up


@pytest.mark.parametrize("state", ["ready", "creating", "stopping"])
def test_giving_up_fails_a_live_workspace_with_the_reason_and_releases_it(
    make_harness: MakeHarness, state: State
) -> None:
    harness = make_harness()
    statelog = harness.ctx.statelog
    entry = stored("ws_crashy", state, request="c0ffee:req-9", labels={"team": "a"}, error=None)
    statelog.put_workspace(entry)
    occupy(harness, entry)
    before = statelog.last_seq
    give_up(harness.ctx, "workspace:ws_crashy", REASON)
    after = statelog.get("ws_crashy")
    assert after is not None
    assert after.record == msgspec.structs.replace(entry.record, state="failed", error=REASON)
    assert (after.spec, after.handle, after.pooled) == (entry.spec, entry.handle, False)
    if state == "creating":  # rolled back: a retry of its create runs anew
        assert after.request == ""
        assert statelog.created_by("c0ffee:req-9") is None
    else:
        assert after.request == "c0ffee:req-9"
        assert statelog.created_by("c0ffee:req-9") == after
    [event] = statelog.events(after=before)
    assert isinstance(event, WorkspaceStateChanged)
    assert (event.workspace_id, event.state, event.reason, event.record) == (
        "ws_crashy", "failed", "its actor was given up on", after.record,
    )  # fmt: skip
    assert harness.ctx.boards.admission.count() == 0
    assert holds_nothing(harness, "ws_crashy")


def test_giving_up_on_a_booting_pool_member_frees_its_pool_place_and_asks_for_a_refill(
    make_harness: MakeHarness,
) -> None:
    members = Pool(1)
    harness = make_harness(pools={"gvisor": members})
    pool, told = harness.recorder(POOL)
    entry = stored("ws_member", "creating", pooled=True)
    harness.ctx.statelog.put_workspace(entry)
    occupy(harness, entry)
    members.booting("ws_member")
    give_up(harness.ctx, "workspace:ws_member", REASON)
    after = harness.ctx.statelog.get("ws_member")
    assert after is not None
    assert (after.record.state, after.record.error, after.pooled) == ("failed", REASON, True)
    assert members.stats().booting == 0
    assert members.deficit() == 1  # its place is free for the next member
    assert harness.ctx.boards.admission.count() == 0
    assert_told(pool, told, [Refill()])


@pytest.mark.parametrize("state", ["destroyed", "failed"])
def test_giving_up_leaves_an_ended_workspace_alone(make_harness: MakeHarness, state: State) -> None:
    harness = make_harness()
    pool, told = harness.recorder(POOL)
    entry = stored("ws_ended", state, pooled=True, error="it ended earlier", request="c0ffee:req-1")
    harness.ctx.statelog.put_workspace(entry)
    occupy(harness, entry)  # stand-ins, to see they are left as they are
    before = harness.ctx.statelog.last_seq
    give_up(harness.ctx, "workspace:ws_ended", REASON)
    assert harness.ctx.statelog.get("ws_ended") == entry
    assert harness.ctx.statelog.last_seq == before
    assert harness.ctx.boards.admission.count() == 1
    assert not holds_nothing(harness, "ws_ended")
    assert_told(pool, told, [])


def test_giving_up_on_a_workspace_the_log_never_saw_does_nothing(make_harness: MakeHarness) -> None:
    harness = make_harness()
    pool, told = harness.recorder(POOL)
    harness.ctx.boards.admission.reserve("ws_unknown")
    give_up(harness.ctx, "workspace:ws_unknown", REASON)
    assert harness.ctx.statelog.get("ws_unknown") is None
    assert harness.ctx.statelog.last_seq == 0
    assert harness.ctx.boards.admission.count() == 1
    assert_told(pool, told, [])
