"""``Watch``: the runtime's events in seq order, a snapshot first and again after a gap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.messages import AlertRaised, Snapshot
from runtime.wire import Client, Watch

Item = Snapshot | dict[str, Any]


def watch(runtime: Runtime, client: Client, **options: Any) -> Watch:
    return Watch(client, runtime.inproc_events_endpoint, context=runtime.zmq_context, **options)


def take(items: Iterator[Item], count: int) -> list[Item]:
    return [next(items) for _ in range(count)]


def test_a_snapshot_comes_first_then_the_events_after_it_in_order(fake_runtime: Runtime) -> None:
    with fake_runtime.client() as client, fake_runtime.client() as watcher:
        before = client.create()
        with watch(fake_runtime, watcher, topics=("workspace",)) as events:
            items = iter(events)
            first = next(items)
            assert isinstance(first, Snapshot)
            assert [record.id for record in first.workspaces] == [before.id]
            created = client.create()
            client.destroy(created.id)
            seen = take(items, 4)
    assert [(e["workspace_id"], e["state"]) for e in seen if isinstance(e, dict)] == [
        (created.id, "creating"), (created.id, "ready"), (created.id, "stopping"), (created.id, "destroyed"),
    ]  # fmt: skip
    seqs = [e["seq"] for e in seen if isinstance(e, dict)]
    assert seqs == sorted(seqs) and seqs[0] > first.seq


def test_a_gap_is_resynced_with_a_snapshot(fake_runtime: Runtime) -> None:
    with fake_runtime.client() as client, fake_runtime.client() as watcher:
        record = client.create()
        stale = client.snapshot().seq - 2  # as if the last two events had been missed
        with watch(fake_runtime, watcher, after=stale) as events:
            items = iter(events)
            client.extend(record.id, 60)  # the next event shows the gap
            resync = next(items)
            assert isinstance(resync, Snapshot)
            assert [r.id for r in resync.workspaces] == [record.id]
            assert resync.workspaces[0].expires_at is not None  # the extension is in it
            client.destroy(record.id)
            after = take(items, 2)
    assert [e["state"] for e in after if isinstance(e, dict)] == ["stopping", "destroyed"]
    assert all(isinstance(e, dict) and e["seq"] > resync.seq for e in after)


def test_events_of_other_topics_count_without_being_yielded(fake_runtime: Runtime) -> None:
    assert fake_runtime.context is not None
    with (
        fake_runtime.client() as client,
        fake_runtime.client() as watcher,
        watch(fake_runtime, watcher, topics=("alert",)) as events,
    ):
        items = iter(events)
        assert isinstance(next(items), Snapshot)
        for _ in range(3):
            client.destroy(client.create().id)  # workspace events move seq on: no gap for "alert"
        fake_runtime.context.alert(AlertRaised(key="k", resource="cpu", message="hot", value=90.0, limit=80.0))
        alert = next(items)
        assert events.last_seq == client.snapshot().seq
    assert isinstance(alert, dict) and alert["type"] == "alert.raised"  # not a Snapshot: no false gap


def test_a_topic_outside_the_state_log_is_refused(fake_runtime: Runtime) -> None:
    with fake_runtime.client() as client, pytest.raises(ValueError, match="not state-log topics: exec"):
        watch(fake_runtime, client, topics=("exec",))
