"""The ProviderActor, ReaperActor and PoolActor alone, on a hand-wired ActorContext.

Each is started by itself under a recording supervisor and driven by explicit messages
(``CreateWorkspace``, ``Tick``, ``Refill``, ``Completed``); ``ask(Sync())`` says a message
was handled. What they deliver to workspace actors reaches the harness's owner of the
``workspace:`` names; what they answer clients reaches its PULL socket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest

from actors.names import WORKSPACE_PREFIX
from actors.pool import PoolActor
from actors.provider import ProviderActor
from actors.reaper import ReaperActor, _inventories
from actors.supervision import Sync
from runtime.capacity import Pool
from runtime.errors import ProviderUnavailable
from runtime.messages import (
    Adopt,
    BackendState,
    BootWorkspace,
    Completed,
    CreateArgs,
    CreateWorkspace,
    DestroyWorkspace,
    ErrorBody,
    ProviderStatus,
    Refill,
    ReplyTo,
    Tick,
    WorkspaceSpec,
)
from runtime.wire.outbox import RETRYABLE
from tests.actors.test_context import TIMEOUT_S, Harness, MakeHarness, harnesses, stored
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until

REPLY_TO = ReplyTo(b"client-1", "create-1")
EVICTED = "evicted from the warm pool to make room for a create"


@pytest.fixture
def make_harness(tmp_path: Path, make_settings: MakeSettings) -> Iterator[MakeHarness]:
    with harnesses(tmp_path, make_settings) as make:
        yield make


def mark(harness: Harness, provider: str, *, healthy: bool = True) -> None:
    """Put a provider's health on the board, as its own ProviderActor would."""
    status = ProviderStatus(
        name=provider, healthy=healthy, checked_at=time.time(), detail="" if healthy else "down", runtime="runsc"
    )
    harness.ctx.boards.providers.update(status)


# ---------------------------------------------------------------------- ProviderActor: fallback


@pytest.mark.parametrize("fallbacks", [("e2b",), ("gvisor", "firecracker", "kata", "e2b")])
def test_a_create_on_an_unhealthy_default_goes_to_the_first_healthy_fallback(
    make_harness: MakeHarness, fallbacks: tuple[str, ...]
) -> None:
    harness = make_harness(providers={"gvisor": FakeProvider(healthy=False)}, fallback_providers=fallbacks)
    firecracker, firecracker_got = harness.recorder("provider:firecracker")
    _, e2b_got = harness.recorder("provider:e2b")
    mark(harness, "firecracker", healthy=False)  # registered, but unhealthy
    mark(harness, "kata")  # healthy, but its actor is not running (restarting)
    mark(harness, "e2b")
    provider = harness.start(ProviderActor, "gvisor")
    create = CreateWorkspace(REPLY_TO, CreateArgs(labels={"task": "1"}, ttl_seconds=60))
    provider.tell(create)
    assert e2b_got.wait_for(1) == [msgspec.structs.replace(create, fallback_from="gvisor")]
    provider.ask(Sync(), timeout=TIMEOUT_S)
    firecracker.ask(Sync(), timeout=TIMEOUT_S)
    assert firecracker_got.all() == []
    assert harness.nothing_sent()  # the fallback answers the client, not the default
    assert harness.delivered() == []
    assert harness.ctx.boards.admission.count() == 0


def unhealthy_refusal(harness: Harness) -> None:
    outcome, reply = harness.reply(REPLY_TO)
    assert outcome == RETRYABLE
    assert reply.error == ErrorBody(
        "provider_unavailable", "provider gvisor is unhealthy: fake provider switched off", True
    )


def test_with_no_healthy_fallback_the_create_is_refused_as_retryable(make_harness: MakeHarness) -> None:
    harness = make_harness(providers={"gvisor": FakeProvider(healthy=False)}, fallback_providers=("e2b",))
    e2b, e2b_got = harness.recorder("provider:e2b")
    mark(harness, "e2b", healthy=False)
    provider = harness.start(ProviderActor, "gvisor")
    provider.tell(CreateWorkspace(REPLY_TO, CreateArgs()))
    unhealthy_refusal(harness)
    e2b.ask(Sync(), timeout=TIMEOUT_S)
    assert e2b_got.all() == []
    assert harness.delivered() == []


@pytest.mark.parametrize(
    "create",
    [
        CreateWorkspace(REPLY_TO, CreateArgs(provider="gvisor")),
        CreateWorkspace(REPLY_TO, CreateArgs(), fallback_from="firecracker"),
    ],
    ids=["named-its-provider", "already-fell-back"],
)
def test_a_create_that_named_its_provider_or_already_fell_back_does_not_fall_back(
    make_harness: MakeHarness, create: CreateWorkspace
) -> None:
    harness = make_harness(providers={"gvisor": FakeProvider(healthy=False)}, fallback_providers=("e2b",))
    e2b, e2b_got = harness.recorder("provider:e2b")
    mark(harness, "e2b")
    provider = harness.start(ProviderActor, "gvisor")
    provider.tell(create)
    unhealthy_refusal(harness)
    e2b.ask(Sync(), timeout=TIMEOUT_S)
    assert e2b_got.all() == []


# ---------------------------------------------------------------------- ProviderActor: admission


def full(make_harness: MakeHarness, members: Pool, holder: str) -> Harness:
    """A healthy provider with a pool, whose one slot the member ``holder`` holds."""
    return make_harness(providers={"gvisor": FakeProvider()}, limit=1, active=[holder], pools={"gvisor": members})


def test_a_create_is_admitted_and_handed_to_a_new_workspace_actor(make_harness: MakeHarness) -> None:
    harness = make_harness(providers={"gvisor": FakeProvider()})
    provider = harness.start(ProviderActor, "gvisor")
    provider.tell(CreateWorkspace(REPLY_TO, CreateArgs(memory="512M", labels={"k": "v"}), fallback_from="e2b"))
    provider.ask(Sync(), timeout=TIMEOUT_S)
    [(name, boot)] = harness.delivered()
    assert isinstance(boot, BootWorkspace)
    entry = boot.entry
    assert name == f"{WORKSPACE_PREFIX}{entry.record.id}"
    assert entry.record.id.startswith("ws_")
    assert boot.reply_to == REPLY_TO
    assert (entry.record.state, entry.record.provider, entry.record.runtime) == ("creating", "gvisor", "fake")
    assert (entry.record.memory_bytes, entry.record.labels) == (512 << 20, {"k": "v"})
    assert entry.record.fallback_from == "e2b"
    assert (entry.request, entry.pooled) == (REPLY_TO.key, False)
    assert harness.ctx.boards.admission.count() == 1
    assert harness.nothing_sent()  # the workspace actor answers once it is created


def test_a_create_beyond_capacity_evicts_an_idle_pool_member_and_takes_its_slot(make_harness: MakeHarness) -> None:
    members = Pool(1)
    members.ready("ws_member")
    harness = full(make_harness, members, "ws_member")
    provider = harness.start(ProviderActor, "gvisor")
    provider.tell(CreateWorkspace(REPLY_TO, CreateArgs(), cold=True))  # cold: the member is not claimed
    provider.ask(Sync(), timeout=TIMEOUT_S)
    [(victim, destroy), (name, boot)] = harness.delivered()
    assert (victim, destroy) == ("workspace:ws_member", DestroyWorkspace(None, reason=EVICTED))
    assert isinstance(boot, BootWorkspace)
    new_id = boot.entry.record.id
    assert name == f"workspace:{new_id}"
    admission = harness.ctx.boards.admission
    assert admission.count() == 1
    admission.release("ws_member")
    assert admission.count() == 1  # the slot moved: the member's actor frees nothing
    admission.release(new_id)
    assert admission.count() == 0
    stats = members.stats()
    assert (stats.size, stats.evictions, stats.claims) == (0, 1, 0)
    assert harness.nothing_sent()


def test_a_create_beyond_capacity_without_an_idle_member_is_refused(make_harness: MakeHarness) -> None:
    members = Pool(1)
    members.booting("ws_booting")  # a booting member cannot be evicted
    harness = full(make_harness, members, "ws_booting")
    provider = harness.start(ProviderActor, "gvisor")
    provider.tell(CreateWorkspace(REPLY_TO, CreateArgs(memory="512M")))
    outcome, reply = harness.reply(REPLY_TO)
    assert outcome == RETRYABLE
    assert reply.error is not None and reply.error.code == "capacity"
    assert harness.delivered() == []
    assert harness.ctx.boards.admission.count() == 1
    assert members.stats().evictions == 0


def test_a_matching_create_claims_a_ready_member_without_taking_another_slot(make_harness: MakeHarness) -> None:
    members = Pool(1)
    members.ready("ws_member")
    harness = full(make_harness, members, "ws_member")
    provider = harness.start(ProviderActor, "gvisor")
    args = CreateArgs(env={"TOKEN": "x"}, labels={"task": "7"}, ttl_seconds=60)
    provider.tell(CreateWorkspace(REPLY_TO, args))
    provider.ask(Sync(), timeout=TIMEOUT_S)
    assert harness.delivered() == [("workspace:ws_member", Adopt(REPLY_TO, args, "gvisor", None))]
    assert harness.ctx.boards.admission.count() == 1
    assert members.stats().claims == 1


def test_a_create_that_cannot_be_delivered_releases_its_slot(make_harness: MakeHarness) -> None:
    harness = make_harness(providers={"gvisor": FakeProvider()})
    harness.ctx.registry.disown(WORKSPACE_PREFIX, harness.owner)  # the workspaces' supervisor is stopping
    provider = harness.start(ProviderActor, "gvisor")
    provider.tell(CreateWorkspace(REPLY_TO, CreateArgs()))
    outcome, reply = harness.reply(REPLY_TO)
    assert outcome == RETRYABLE
    assert reply.error is not None and reply.error.code == "provider_unavailable"
    assert reply.error.message.endswith("cannot be started: the runtime is stopping")
    assert harness.ctx.boards.admission.count() == 0


# ---------------------------------------------------------------------- ReaperActor

PAST = 1_000_000_000.0
EXPIRED = "expired at 2001-09-09T01:46:40Z"


@dataclass
class HeldProvider(FakeProvider):
    """A provider whose inventory waits for ``release`` (so the reaper's own listings stay out)
    and whose removals are recorded (``refuse``: handles whose removal fails)."""

    release: threading.Event = field(default_factory=threading.Event)
    removed: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def inventory(self) -> dict[str, BackendState]:
        self.release.wait(TIMEOUT_S * 6)
        return {}

    def destroy(self, handle: str) -> None:
        if handle in self.refuse:
            raise ProviderUnavailable(f"cannot remove {handle}")
        with self.lock:
            self.removed.append(handle)


@pytest.fixture
def held() -> Iterator[HeldProvider]:
    provider = HeldProvider()
    yield provider
    provider.release.set()


def test_a_sweep_sends_expired_ephemeral_workspaces_a_destroy_and_nothing_else(
    make_harness: MakeHarness, held: HeldProvider
) -> None:
    harness = make_harness(providers={"gvisor": held})
    later = time.time() + 3600
    for entry in (
        stored("ws_expired", "ready", expires_at=PAST),
        stored("ws_failed", "failed", expires_at=PAST),
        stored("ws_pooled", "ready", pooled=True, expires_at=PAST),
        stored("ws_persistent", "ready", persistent=True, expires_at=PAST),
        stored("ws_later", "ready", expires_at=later),
        stored("ws_forever", "ready", expires_at=None),
        stored("ws_creating", "creating", expires_at=PAST),
        stored("ws_stopping", "stopping", expires_at=PAST),
        stored("ws_destroyed", "destroyed", expires_at=PAST),
    ):
        harness.ctx.statelog.put_workspace(entry)
    reaper = harness.start(ReaperActor)  # it sweeps once at start
    expected = [
        ("workspace:ws_expired", DestroyWorkspace(None, reason=EXPIRED)),
        ("workspace:ws_failed", DestroyWorkspace(None, reason=EXPIRED)),
    ]
    assert harness.delivered() == expected
    sweeps = harness.ctx.boards.sweeps.as_dict()
    assert (sweeps["sweeps"], sweeps["reaped"], sweeps["orphans"]) == (1, 2, 0)
    assert sweeps["last_sweep_at"] is not None
    assert harness.ctx.blocking == ["inventory"]
    reaper.tell(Tick())
    reaper.ask(Sync(), timeout=TIMEOUT_S)
    assert harness.delivered() == expected * 2  # its actor makes a second destroy a no-op
    assert harness.ctx.boards.sweeps.as_dict()["reaped"] == 4
    assert harness.ctx.blocking == ["inventory"]  # no second listing while the first is out


def test_a_failed_pool_member_is_destroyed_at_the_next_sweep(make_harness: MakeHarness, held: HeldProvider) -> None:
    # Nobody will claim it, `list` does not show it and it never expires: the reaper is its end.
    harness = make_harness(providers={"gvisor": held})
    harness.ctx.statelog.put_workspace(stored("ws_member", "failed", pooled=True, expires_at=None))
    harness.ctx.statelog.put_workspace(stored("ws_ready_member", "ready", pooled=True, expires_at=None))
    harness.start(ReaperActor)
    assert harness.delivered() == [
        ("workspace:ws_member", DestroyWorkspace(None, reason="a warm pool member that failed")),
    ]
    assert harness.ctx.boards.sweeps.as_dict()["reaped"] == 1


def state(workspace_id: str, handle: str) -> BackendState:
    return BackendState(workspace_id=workspace_id, handle=handle, running=True)


def test_orphans_are_removed_only_at_their_second_consecutive_sighting(
    make_harness: MakeHarness, held: HeldProvider
) -> None:
    elsewhere = HeldProvider(name="e2b", release=held.release)
    harness = make_harness(providers={"gvisor": held, "e2b": elsewhere})
    harness.ctx.statelog.put_workspace(stored("ws_live", "ready"))
    harness.ctx.statelog.put_workspace(stored("ws_failed", "failed"))
    harness.ctx.statelog.put_workspace(stored("ws_gone", "destroyed"))
    reaper = harness.start(ReaperActor)
    live, failed = state("ws_live", "h-live"), state("ws_failed", "h-failed")
    gone, orphan = state("ws_gone", "h-gone"), state("ws_orphan", "h-orphan")
    flicker, moved = state("ws_flicker", "h-flicker"), state("ws_moved", "h-moved")
    first = {
        "gvisor": {
            "ws_live": live,
            "ws_failed": failed,
            "ws_gone": gone,
            "ws_orphan": orphan,
            "ws_flicker": flicker,
            "ws_moved": moved,
        }
    }
    second = {
        "gvisor": {"ws_live": live, "ws_failed": failed, "ws_gone": gone, "ws_orphan": orphan},
        "e2b": {"ws_moved": moved},
    }
    third = {"gvisor": {"ws_flicker": flicker}, "e2b": {}}

    def sight(inventories: dict[str, dict[str, BackendState]]) -> list[str]:
        reaper.tell(Completed("inventory", None, value=inventories))
        reaper.ask(Sync(), timeout=TIMEOUT_S)
        return harness.ctx.blocking[1:]  # the removals started so far (after the listing at start)

    assert sight(first) == []  # a first sighting waits one interval
    assert sight(second) == ["orphan", "orphan"]  # gone and orphan; moved is new on e2b, flicker was not seen
    assert sight(third) == ["orphan", "orphan"]  # flicker's grace starts over
    poll_until(lambda: harness.ctx.boards.sweeps.as_dict()["orphans"] == 2, timeout_s=TIMEOUT_S, every_s=0.01)
    assert sorted(held.removed) == ["h-gone", "h-orphan"]  # never a live or a failed workspace's
    assert elsewhere.removed == []


def test_an_orphan_whose_removal_fails_is_logged_and_not_counted(
    make_harness: MakeHarness, held: HeldProvider, caplog: pytest.LogCaptureFixture
) -> None:
    held.refuse.add("h-stuck")
    harness = make_harness(providers={"gvisor": held})
    reaper = harness.start(ReaperActor)
    inventories = {"gvisor": {"ws_stuck": state("ws_stuck", "h-stuck"), "ws_orphan": state("ws_orphan", "h-orphan")}}
    for _ in range(2):
        reaper.tell(Completed("inventory", None, value=inventories))
    poll_until(lambda: harness.ctx.boards.sweeps.as_dict()["orphans"] == 1, timeout_s=TIMEOUT_S, every_s=0.01)
    poll_until(lambda: "removing an orphan failed: cannot remove h-stuck" in caplog.text, timeout_s=TIMEOUT_S)
    reaper.ask(Sync(), timeout=TIMEOUT_S)
    assert harness.ctx.boards.sweeps.as_dict()["orphans"] == 1
    assert held.removed == ["h-orphan"]


def test_the_inventories_skip_a_provider_that_cannot_be_listed(caplog: pytest.LogCaptureFixture) -> None:
    up, down = FakeProvider(), FakeProvider(name="e2b", healthy=False)
    spec = WorkspaceSpec(workspace_id="ws_a", image="i", cpu=1.0, memory_bytes=1, disk_bytes=1, env={}, labels={})
    up.workspaces["fake-ws_a"] = spec
    up.stopped.add("fake-ws_a")
    found = _inventories({"e2b": down, "gvisor": up})
    assert found == {
        "gvisor": {
            "ws_a": BackendState(
                workspace_id="ws_a", handle="fake-ws_a", running=False,
                detail="the workspace's container exited with code 1",
            )
        }
    }  # fmt: skip
    assert "the reaper could not list provider e2b: fake provider switched off" in caplog.text


# ---------------------------------------------------------------------- PoolActor


def boots(harness: Harness) -> list[BootWorkspace]:
    """The boots the pool delivered so far (each to the new member's own name)."""
    delivered = harness.delivered()
    assert all(isinstance(boot, BootWorkspace) for _, boot in delivered), delivered
    assert [name for name, _ in delivered] == [f"workspace:{boot.entry.record.id}" for _, boot in delivered]
    return [boot for _, boot in delivered]


def refill(pool: pykka.ActorRef[Any]) -> None:
    pool.tell(Refill())
    pool.ask(Sync(), timeout=TIMEOUT_S)


def test_the_pool_boots_one_member_at_a_time_up_to_its_target(make_harness: MakeHarness) -> None:
    members = Pool(2)
    harness = make_harness(pools={"gvisor": members})
    mark(harness, "gvisor")
    pool = harness.start(PoolActor)  # it refills once at start
    [first] = boots(harness)
    entry = first.entry
    assert first.reply_to is None
    assert (entry.pooled, entry.record.expires_at, entry.record.state) == (True, None, "creating")
    settings = harness.ctx.settings
    assert (entry.record.provider, entry.record.runtime) == ("gvisor", "runsc")  # the board's runtime
    assert (entry.record.image, entry.record.cpu) == (settings.default_image, settings.default_cpu)
    assert entry.record.memory_bytes == settings.default_memory
    assert members.stats().booting == 1
    refill(pool)
    assert len(boots(harness)) == 1  # the next waits until this one is ready
    members.ready(entry.record.id)
    pool.tell(Tick())  # the periodic tick refills as Refill does
    pool.ask(Sync(), timeout=TIMEOUT_S)
    [_, second] = boots(harness)
    members.ready(second.entry.record.id)
    refill(pool)
    assert len(boots(harness)) == 2  # the target is reached
    assert harness.ctx.boards.admission.count() == 2
    assert members.stats().size == 2


def test_the_pool_refills_only_while_its_provider_is_healthy(make_harness: MakeHarness) -> None:
    members, others = Pool(1), Pool(1)
    harness = make_harness(pools={"gvisor": members, "e2b": others})
    mark(harness, "gvisor", healthy=False)  # e2b was never checked at all
    pool = harness.start(PoolActor)
    assert boots(harness) == []
    assert harness.ctx.boards.admission.count() == 0
    mark(harness, "gvisor")
    refill(pool)
    [boot] = boots(harness)
    assert boot.entry.record.provider == "gvisor"
    assert (members.stats().booting, others.stats().booting) == (1, 0)


def test_the_pool_refills_only_while_a_slot_is_free(make_harness: MakeHarness) -> None:
    members = Pool(1)
    harness = make_harness(pools={"gvisor": members}, limit=1, active=["ws_user"])
    mark(harness, "gvisor")
    pool = harness.start(PoolActor)
    assert boots(harness) == []  # user workspaces come first
    assert members.stats().booting == 0
    harness.ctx.boards.admission.release("ws_user")
    refill(pool)
    [boot] = boots(harness)
    assert harness.ctx.boards.admission.count() == 1
    members.failed(boot.entry.record.id)  # a failed boot is retried at the next refill
    harness.ctx.boards.admission.release(boot.entry.record.id)
    refill(pool)
    assert len(boots(harness)) == 2
    assert members.stats().refill_failures == 1


def test_default_settings_the_pool_cannot_use_boot_nothing(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness(pools={"gvisor": Pool(1)}, default_memory=1 << 20)  # below the 6M minimum
    mark(harness, "gvisor")
    harness.start(PoolActor)
    assert boots(harness) == []
    assert harness.ctx.boards.admission.count() == 0
    assert "the default workspace settings are not valid for the pool" in caplog.text
