"""The warm pool's shared state, which requests fit it, and taking members back at start."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pytest

from runtime.capacity.pool import Pool, PoolStats, adopt, adopt_pool_members, matches_pool
from runtime.capacity.resources import resolve_create
from runtime.config import Settings
from runtime.messages import CreateArgs, StoredWorkspace, WorkspaceRecord, WorkspaceSpec
from tests.conftest import MakeSettings


def member(
    settings: Settings,
    workspace_id: str,
    *,
    state: str = "ready",
    provider: str = "gvisor",
    pooled: bool = True,
    **shape: Any,
) -> StoredWorkspace:
    """A stored workspace of the default shape (``shape`` overrides image, cpu, memory_bytes, disk_bytes)."""
    resources: dict[str, Any] = {
        "image": settings.default_image,
        "cpu": settings.default_cpu,
        "memory_bytes": settings.default_memory,
        "disk_bytes": settings.default_disk,
    }
    resources.update(shape)
    record = WorkspaceRecord(
        id=workspace_id,
        state=state,  # type: ignore[arg-type]
        provider=provider,
        runtime="runsc",
        labels={},
        persistent=False,
        created_at=100.0,
        expires_at=100.0 + 86400,
        **resources,
    )
    spec = WorkspaceSpec(workspace_id=workspace_id, env={}, labels={}, **resources)
    return StoredWorkspace(record=record, spec=spec, handle=f"fake-{workspace_id}", pooled=pooled)


# ---------------------------------------------------------------------- Pool


def test_a_new_pool_is_empty_with_every_counter_at_zero() -> None:
    assert Pool(3).stats() == PoolStats(size=0, target=3, booting=0, claims=0, misses=0, refill_failures=0, evictions=0)


def test_a_claim_takes_the_oldest_ready_member_and_an_empty_pool_counts_a_miss() -> None:
    pool = Pool(3)
    assert pool.claim() is None
    for workspace_id in ("ws_1", "ws_2", "ws_3"):
        pool.booting(workspace_id)
        pool.ready(workspace_id)
    assert [pool.claim(), pool.claim()] == ["ws_1", "ws_2"]
    stats = pool.stats()
    assert (stats.size, stats.claims, stats.misses) == (1, 2, 1)


def test_an_eviction_takes_the_newest_ready_member_and_an_empty_pool_evicts_nothing() -> None:
    pool = Pool(3)
    assert pool.evict() is None
    assert pool.stats().evictions == 0
    for workspace_id in ("ws_1", "ws_2"):
        pool.ready(workspace_id)
    assert pool.evict() == "ws_2"
    assert pool.claim() == "ws_1"
    stats = pool.stats()
    assert (stats.size, stats.evictions, stats.claims, stats.misses) == (0, 1, 1, 0)


def test_the_deficit_starts_one_boot_at_a_time_until_the_target_is_reached() -> None:
    pool = Pool(3)
    assert pool.deficit() == 1
    pool.booting("ws_1")
    assert pool.deficit() == 0  # one boot in flight: wait for it
    pool.ready("ws_1")
    assert pool.deficit() == 1
    pool.booting("ws_2")
    assert pool.deficit() == 0
    pool.failed("ws_2")
    assert pool.deficit() == 1
    for workspace_id in ("ws_3", "ws_4"):
        pool.booting(workspace_id)
        assert pool.deficit() == 0
        pool.ready(workspace_id)
    assert pool.stats().size == 3
    assert pool.deficit() == 0


def test_the_deficit_is_never_negative_when_the_pool_holds_more_than_its_target() -> None:
    pool = Pool(1)
    pool.ready("ws_1")
    pool.ready("ws_2")
    pool.booting("ws_3")
    assert pool.deficit() == 0
    assert Pool(0).deficit() == 0


def test_ready_moves_a_member_out_of_booting_once_even_if_reported_twice() -> None:
    pool = Pool(2)
    pool.booting("ws_1")
    assert (pool.stats().booting, pool.stats().size) == (1, 0)
    pool.ready("ws_1")
    pool.ready("ws_1")
    assert (pool.stats().booting, pool.stats().size) == (0, 1)
    assert pool.claim() == "ws_1"
    assert pool.claim() is None


def test_a_failed_boot_leaves_booting_and_counts_a_refill_failure() -> None:
    pool = Pool(2)
    pool.booting("ws_1")
    pool.failed("ws_1")
    stats = pool.stats()
    assert (stats.booting, stats.size, stats.refill_failures) == (0, 0, 1)


def test_remove_drops_a_member_from_booting_or_ready_without_counting_anything() -> None:
    pool = Pool(3)
    pool.booting("ws_booting")
    for workspace_id in ("ws_1", "ws_2"):
        pool.ready(workspace_id)
    pool.remove("ws_booting")
    pool.remove("ws_1")
    pool.remove("ws_unknown")
    assert pool.stats() == PoolStats(size=1, target=3, booting=0, claims=0, misses=0, refill_failures=0, evictions=0)
    assert pool.claim() == "ws_2"


def test_concurrent_claims_hand_out_each_ready_member_exactly_once() -> None:
    pool = Pool(20)
    members = [f"ws_{n}" for n in range(20)]
    for workspace_id in members:
        pool.ready(workspace_id)
    start = threading.Barrier(30)
    claimed: list[str | None] = []
    lock = threading.Lock()

    def claim() -> None:
        start.wait()
        got = pool.claim()
        with lock:
            claimed.append(got)

    threads = [threading.Thread(target=claim) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c for c in claimed if c is not None) == sorted(members)
    assert claimed.count(None) == 10
    stats = pool.stats()
    assert (stats.size, stats.claims, stats.misses) == (0, 20, 10)


# ---------------------------------------------------------------------- matches_pool


def test_a_create_of_defaults_or_of_the_default_values_spelled_out_matches_the_pool(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()  # 1 CPU, 256M, 1G
    assert matches_pool(settings, CreateArgs())
    assert matches_pool(settings, CreateArgs(image=settings.default_image, cpu=1, memory="256M", disk="1G"))
    assert matches_pool(settings, CreateArgs(memory="256m", disk="1GiB"))
    assert matches_pool(settings, CreateArgs(memory=256 << 20, disk=1 << 30))
    assert matches_pool(settings, CreateArgs(memory="0.25G"))


def test_env_labels_ttl_and_persistence_do_not_keep_a_create_from_the_pool(make_settings: MakeSettings) -> None:
    settings = make_settings()
    assert matches_pool(settings, CreateArgs(env={"TOKEN": "x"}, labels={"task": "7"}, ttl_seconds=60))
    assert matches_pool(settings, CreateArgs(persistent=True))


@pytest.mark.parametrize(
    "args",
    [
        CreateArgs(image="python:3.12"),
        CreateArgs(cpu=2),
        CreateArgs(cpu=0.5),
        CreateArgs(memory="512M"),
        CreateArgs(memory=(256 << 20) + 1),
        CreateArgs(disk="2G"),
    ],
    ids=["image", "more-cpu", "less-cpu", "memory", "memory-by-one-byte", "disk"],
)
def test_a_create_of_another_shape_does_not_match_the_pool(make_settings: MakeSettings, args: CreateArgs) -> None:
    assert not matches_pool(make_settings(), args)


@pytest.mark.parametrize("field", ["memory", "disk"])
@pytest.mark.parametrize("value", ["lots", "0", "-1G", 0])
def test_a_bad_size_does_not_match_the_pool_so_the_cold_path_can_refuse_it(
    make_settings: MakeSettings, field: str, value: int | str
) -> None:
    assert not matches_pool(make_settings(), CreateArgs(**{field: value}))


# ---------------------------------------------------------------------- adopt


def test_an_adopted_member_keeps_its_identity_and_resources_and_takes_the_request_s_terms(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    pooled = member(settings, "ws_member")
    wanted = resolve_create(  # other resources and runtime, to show whose are kept
        settings,
        CreateArgs(cpu=2, memory="512M", env={"TOKEN": "x"}, labels={"task": "7"}, persistent=True),
        workspace_id="ws_requested",
        provider="gvisor",
        runtime="runc",
        now=5000.0,
        fallback_from="firecracker",
        request="client-1:req-9",
    )
    adopted = adopt(pooled, wanted)
    assert adopted == StoredWorkspace(
        record=msgspec.structs.replace(
            pooled.record,
            labels={"task": "7"},
            persistent=True,
            created_at=5000.0,
            expires_at=None,
            from_pool=True,
            fallback_from="firecracker",
        ),
        spec=msgspec.structs.replace(pooled.spec, env={"TOKEN": "x"}, labels={"task": "7"}),
        handle="fake-ws_member",
        pooled=False,
        request="client-1:req-9",  # a retry of the create finds the member
    )
    assert (adopted.record.id, adopted.record.runtime, adopted.record.cpu) == ("ws_member", "runsc", 1.0)
    assert (pooled.pooled, pooled.record.labels, pooled.spec.env) == (True, {}, {})  # the member itself is untouched


def test_an_adopted_member_takes_a_ttl_expiry_counted_from_the_claim(make_settings: MakeSettings) -> None:
    settings = make_settings()
    wanted = resolve_create(
        settings, CreateArgs(ttl_seconds=120), workspace_id="ws_x", provider="gvisor", runtime="runsc", now=9000.0
    )
    adopted = adopt(member(settings, "ws_member"), wanted)
    assert (adopted.record.created_at, adopted.record.expires_at) == (9000.0, 9120.0)
    assert adopted.record.persistent is False


# ---------------------------------------------------------------------- adopt_pool_members


def test_ready_members_rejoin_their_pool_up_to_the_target_and_the_rest_are_returned(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    pool = Pool(2)
    entries = [member(settings, f"ws_{n}") for n in (1, 2, 3)]
    unwanted = adopt_pool_members(settings, entries, {"gvisor": pool})
    assert unwanted == [("ws_3", "a pool member no longer wanted at start")]
    assert (pool.stats().size, pool.stats().booting) == (2, 0)
    assert [pool.claim(), pool.claim()] == ["ws_1", "ws_2"]


def test_half_created_members_are_returned_whatever_room_the_pool_has(make_settings: MakeSettings) -> None:
    settings = make_settings()
    pool = Pool(5)
    unwanted = adopt_pool_members(
        settings, [member(settings, "ws_half", state="creating"), member(settings, "ws_ok")], {"gvisor": pool}
    )
    assert unwanted == [("ws_half", "a pool member left half-created by the last run")]
    assert pool.claim() == "ws_ok"
    assert pool.claim() is None


def test_members_of_a_provider_without_a_pool_are_returned(make_settings: MakeSettings) -> None:
    settings = make_settings()
    entries = [member(settings, "ws_gvisor"), member(settings, "ws_e2b", provider="e2b")]
    pool = Pool(2)
    assert adopt_pool_members(settings, entries, {"gvisor": pool}) == [
        ("ws_e2b", "a pool member no longer wanted at start")
    ]
    assert adopt_pool_members(settings, [member(settings, "ws_a")], {}) == [
        ("ws_a", "a pool member no longer wanted at start")
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"default_image": "python:3.12"},
        {"default_cpu": 2.0},
        {"default_memory": 512 << 20},
        {"default_disk": 2 << 30},
    ],
    ids=["image", "cpu", "memory", "disk"],
)
def test_a_member_of_a_shape_the_defaults_no_longer_have_is_returned(
    make_settings: MakeSettings, change: dict[str, Any]
) -> None:
    old = make_settings()
    pool = Pool(2)
    unwanted = adopt_pool_members(make_settings(**change), [member(old, "ws_old")], {"gvisor": pool})
    assert unwanted == [("ws_old", "a pool member no longer wanted at start")]
    assert pool.stats().size == 0


def test_claimed_workspaces_and_ended_members_are_left_alone(make_settings: MakeSettings) -> None:
    settings = make_settings()
    pool = Pool(3)
    entries = [
        member(settings, "ws_claimed", pooled=False),
        member(settings, "ws_claimed_creating", pooled=False, state="creating"),
        member(settings, "ws_failed", state="failed"),
        member(settings, "ws_destroyed", state="destroyed"),
        member(settings, "ws_stopping", state="stopping"),
    ]
    assert adopt_pool_members(settings, entries, {"gvisor": pool}) == []
    assert pool.stats().size == 0
