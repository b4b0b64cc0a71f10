"""The warm pool and the reaper, through a real runtime on a fake provider."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import CapacityExceeded
from runtime.messages import Probe, WorkspaceSpec
from runtime.wire import Client, Subscriber
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


def start(make_settings: MakeSettings, provider: FakeProvider, **changes: Any) -> Runtime:
    return Runtime(make_settings(**changes), providers={"gvisor": provider})


@pytest.fixture
def pooled(make_settings: MakeSettings, provider: FakeProvider) -> Iterator[tuple[Runtime, Subscriber, Client]]:
    runtime = start(make_settings, provider, warm_pool_size=2, max_concurrent=4)
    # Subscribe before the pool fills, through the runtime's own context.
    runtime.start()
    with runtime.subscribe(("workspace",)) as events, runtime.client(timeout_s=10) as client:
        yield runtime, events, client
    runtime.stop()


def fill(events: Subscriber, client: Client, count: int) -> None:
    # Polled: a member may become ready before the subscriber has joined (ZeroMQ's slow joiner).
    poll_until(lambda: client.stats()["pool"]["size"] >= count)


def test_a_matching_create_is_served_from_the_pool_with_its_labels_env_and_ttl(
    pooled: tuple[Runtime, Subscriber, Client], provider: FakeProvider
) -> None:
    _, events, client = pooled
    fill(events, client, 2)
    created_before = provider.created
    record = client.create(labels={"task": "7"}, env={"TOKEN": "x"}, ttl_seconds=120)
    assert record.from_pool
    assert record.labels == {"task": "7"}
    assert record.expires_at == pytest.approx(record.created_at + 120)
    assert provider.created == created_before  # no boot on the claim's path
    client.exec(record.id, ["true"], env={"MORE": "y"})
    assert provider.last_env == {"TOKEN": "x", "MORE": "y"}
    assert [r.id for r in client.list()] == [record.id]  # pool members stay hidden
    stats = client.stats()["pool"]
    assert (stats["claims"], stats["target"]) == (1, 2)
    fill(events, client, 2)  # refilled in the background
    client.destroy(record.id)


def test_a_request_of_another_shape_is_served_cold(pooled: tuple[Runtime, Subscriber, Client]) -> None:
    _, events, client = pooled
    fill(events, client, 2)
    record = client.create(memory="512M")
    assert not record.from_pool
    assert record.memory_bytes == 512 << 20
    assert client.stats()["pool"]["size"] == 2
    client.destroy(record.id)


def test_an_empty_pool_is_a_miss_served_cold(make_settings: MakeSettings, provider: FakeProvider) -> None:
    provider.boot_gate = threading.Event()  # the pool's member cannot finish booting yet
    runtime = start(make_settings, provider, warm_pool_size=1).start()
    try:
        with runtime.client(timeout_s=10) as client, runtime.client(timeout_s=10) as watcher:
            outcome: list[Any] = []
            creating = threading.Thread(target=lambda: outcome.append(client.create()))
            creating.start()
            # the create finds the pool empty and goes cold (its boot waits at the gate)
            poll_until(lambda: watcher.stats()["pool"]["misses"] == 1, timeout_s=10, every_s=0.01)
            provider.boot_gate.set()
            creating.join(10)
            [record] = outcome
            assert not record.from_pool
            assert client.stats()["pool"]["misses"] == 1
            client.destroy(record.id)
    finally:
        runtime.stop()


def test_pool_members_count_against_capacity_but_give_way_to_creates(
    pooled: tuple[Runtime, Subscriber, Client],
) -> None:
    _, events, client = pooled
    fill(events, client, 2)
    a = client.create(cpu=0.5)  # cold: 3 of 4 slots used
    b = client.create(cpu=0.5)  # cold: the last slot
    c = client.create(cpu=0.5)  # full: an idle member is evicted for it
    assert client.stats()["pool"]["evictions"] == 1
    d = client.create(cpu=0.5)  # and the other one
    with pytest.raises(CapacityExceeded):
        client.create(cpu=0.5)
    assert client.stats()["capacity"] == {"active": 4, "limit": 4}
    for record in (a, b, c, d):
        client.destroy(record.id)


def test_pool_members_are_readopted_after_a_restart(make_settings: MakeSettings, provider: FakeProvider) -> None:
    settings = make_settings(warm_pool_size=2)
    runtime = Runtime(settings, providers={"gvisor": provider}).start()
    with runtime.subscribe(("workspace",)) as events, runtime.client() as client:
        fill(events, client, 2)
    runtime.stop()
    booted = provider.created
    runtime = Runtime(settings, providers={"gvisor": provider}).start()
    try:
        with runtime.client() as client:
            assert client.stats()["pool"]["size"] == 2
            assert client.create().from_pool
            assert provider.created <= booted + 1  # only the refill boots
    finally:
        runtime.stop()


def test_a_restart_with_a_smaller_pool_destroys_the_members_it_no_longer_wants(
    make_settings: MakeSettings, provider: FakeProvider
) -> None:
    runtime = Runtime(make_settings(warm_pool_size=2), providers={"gvisor": provider}).start()
    with runtime.subscribe(("workspace",)) as events, runtime.client() as client:
        fill(events, client, 2)
    runtime.stop()
    assert len(provider.workspaces) == 2
    runtime = Runtime(make_settings(warm_pool_size=1), providers={"gvisor": provider}).start()
    try:
        with runtime.subscribe(("workspace",)) as events, runtime.client() as client:
            client.ping()
            if len(provider.workspaces) > 1:
                wait_for_event(events, lambda e: e["pooled"] and e["state"] == "destroyed")
            assert len(provider.workspaces) == 1
            assert client.stats()["pool"]["size"] == 1
    finally:
        runtime.stop()


def test_a_member_caught_booting_by_a_stop_is_cleaned_up_at_the_next_start(
    make_settings: MakeSettings, provider: FakeProvider
) -> None:
    provider.boot_gate = threading.Event()
    runtime = Runtime(make_settings(warm_pool_size=1), providers={"gvisor": provider}).start()
    with runtime.client() as client:
        poll_until(lambda: client.stats()["pool"]["booting"] == 1, timeout_s=10, every_s=0.01)  # held at the gate
    runtime.stop()
    provider.boot_gate.set()  # the backend finishes the create after the runtime is gone
    poll_until(lambda: bool(provider.workspaces), timeout_s=10, every_s=0.01)
    provider.boot_gate = None
    runtime = Runtime(make_settings(warm_pool_size=0), providers={"gvisor": provider}).start()
    try:
        with runtime.subscribe(("workspace",)) as events, runtime.client() as client:
            client.ping()
            if provider.workspaces:
                wait_for_event(events, lambda e: e["pooled"] and e["state"] == "destroyed")
            assert provider.workspaces == {}  # found by its workspace id, though its handle was never recorded
    finally:
        runtime.stop()


def test_the_reaper_destroys_expired_workspaces_but_not_persistent_ones(
    make_settings: MakeSettings, provider: FakeProvider
) -> None:
    runtime = start(make_settings, provider, cleanup_interval_min=0.002).start()  # every 0.12 s
    try:
        with runtime.subscribe(("workspace",)) as events, runtime.client() as client:
            client.ping()
            short = client.create(ttl_seconds=0.3)
            keeper = client.create(persistent=True)
            event = wait_for_event(events, lambda e: e["workspace_id"] == short.id and e["state"] == "stopping")
            assert str(event["reason"]).startswith("expired at ")
            wait_for_event(events, lambda e: e["workspace_id"] == short.id and e["state"] == "destroyed")
            assert client.get(keeper.id).state == "ready"
            reaper = client.stats()["reaper"]
            assert reaper["reaped"] == 1 and reaper["sweeps"] >= 1
            client.destroy(keeper.id)
    finally:
        runtime.stop()


def test_the_reaper_removes_orphans_after_a_grace_period(make_settings: MakeSettings, provider: FakeProvider) -> None:
    runtime = start(make_settings, provider, cleanup_interval_min=0.002).start()
    try:
        with runtime.client() as client:
            gone = client.create()
            client.destroy(gone.id)
            spec = WorkspaceSpec(
                workspace_id="ws_0rphan000000", image="i", cpu=1.0, memory_bytes=1, disk_bytes=1, env={}, labels={}
            )
            with provider.lock:  # a labelled container the log knows nothing about, and a leftover
                provider.workspaces["fake-ws_0rphan000000"] = spec
                provider.workspaces[f"fake-{gone.id}"] = spec
            # sweeps run every 0.12 s; an orphan goes at its second sighting
            poll_until(lambda: client.stats()["reaper"]["orphans"] >= 2, timeout_s=10, every_s=0.01)
            assert client.stats()["reaper"]["orphans"] == 2
            assert provider.workspaces == {}
    finally:
        runtime.stop()


def test_a_crashed_pool_or_reaper_is_restarted_without_touching_workspaces(
    make_settings: MakeSettings, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.names import POOL, REAPER
    from actors.pool import PoolActor
    from actors.supervision import Sync
    from runtime.messages import Completed, Refill

    runtime = start(make_settings, provider, warm_pool_size=1).start()
    try:
        with runtime.subscribe(("workspace",)) as events, runtime.client() as client:
            fill(events, client, 1)
            record = client.create(cpu=0.5)
            registry = runtime._ctx.registry  # type: ignore[union-attr]
            supervisor = runtime._supervisor
            assert supervisor is not None
            reaper, pool = registry.get(REAPER), registry.get(POOL)
            assert reaper is not None and pool is not None

            reaper.tell(Completed("inventory", None, value=["not", "a", "mapping"]))  # makes it crash
            real_refill = PoolActor._refill
            calls: list[int] = []

            def refill_once_broken(self: PoolActor) -> None:
                calls.append(1)
                if len(calls) == 1:
                    raise RuntimeError("injected")
                real_refill(self)

            monkeypatch.setattr(PoolActor, "_refill", refill_once_broken)
            pool.tell(Refill())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                supervisor.ask(Sync(), timeout=5)
                new_reaper, new_pool = registry.get(REAPER), registry.get(POOL)
                if (
                    new_reaper is not None
                    and new_pool is not None
                    and new_reaper.actor_urn != reaper.actor_urn
                    and new_pool.actor_urn != pool.actor_urn
                ):
                    break
            else:
                pytest.fail("the pool and the reaper were not both restarted")
            assert client.exec(record.id, ["true"]).exit_code == 0
            assert client.get(record.id).state == "ready"
            assert client.stats()["pool"]["size"] == 1
            client.destroy(record.id)
    finally:
        runtime.stop()


def test_the_pool_fills_as_soon_as_the_runtime_serves_not_at_the_first_health_tick(
    make_settings: MakeSettings,
) -> None:
    class SlowToAnswer(FakeProvider):
        def probe(self) -> Probe:  # a backend whose health check takes a while, as Docker's may
            time.sleep(0.3)
            return super().probe()

    slow = SlowToAnswer()
    runtime = start(make_settings, slow, warm_pool_size=2, health_interval_s=3600.0)
    with runtime, runtime.client(timeout_s=10) as client:
        poll_until(lambda: client.stats()["pool"]["size"] == 2, timeout_s=20)
