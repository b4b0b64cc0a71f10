"""The state log on a real LMDB environment in a temporary directory."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec

from runtime.messages import Event, StoredWorkspace, WorkspaceRecord, WorkspaceSpec
from runtime.state.statelog import StateLog


def entry(workspace_id: str, state: str = "ready") -> StoredWorkspace:
    record = WorkspaceRecord(
        id=workspace_id,
        state=state,  # type: ignore[arg-type]
        provider="gvisor",
        runtime="runsc",
        image="img",
        cpu=1.0,
        memory_bytes=1,
        disk_bytes=1,
        labels={},
        persistent=False,
        created_at=1.0,
        expires_at=None,
    )
    spec = WorkspaceSpec(
        workspace_id=workspace_id, image="img", cpu=1.0, memory_bytes=1, disk_bytes=1, env={}, labels={}
    )
    return StoredWorkspace(record=record, spec=spec)


def test_a_change_is_durable_and_readable_after_reopening(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    event = log.put_workspace(entry("ws_a"), reason="created")
    assert event.seq == 1
    assert event.ts > 0
    log.close()
    reopened = StateLog(tmp_path)
    try:
        stored = reopened.get("ws_a")
        assert stored is not None
        assert stored.record.state == "ready"
        assert reopened.last_seq == 1
        assert [e.seq for e in reopened.events()] == [1]
    finally:
        reopened.close()


def test_seq_keeps_increasing_across_restarts_and_the_instance_id_is_stable(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    instance = log.instance_id
    log.put_workspace(entry("ws_a"))
    log.put_workspace(entry("ws_a", "destroyed"))
    log.close()
    log = StateLog(tmp_path)
    try:
        assert log.put_workspace(entry("ws_b")).seq == 3
        assert log.instance_id == instance
        assert [e.seq for e in log.events()] == [1, 2, 3]
        assert [e.seq for e in log.events(after=2)] == [3]
        stored = log.get("ws_a")
        assert stored is not None and stored.record.state == "destroyed"
    finally:
        log.close()


def test_concurrent_writers_get_gap_free_unique_seqs_in_commit_order(tmp_path: Path) -> None:
    published: list[Event] = []
    log = StateLog(tmp_path, on_commit=published.append)
    seqs: list[int] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        for i in range(25):
            seq = log.put_workspace(entry(f"ws_{n}_{i}")).seq
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert sorted(seqs) == list(range(1, 201))
    assert [event.seq for event in published] == list(range(1, 201))


def test_workspaces_lists_current_entries_only(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    try:
        log.put_workspace(entry("ws_a", "creating"))
        log.put_workspace(entry("ws_a", "ready"))
        log.put_workspace(entry("ws_b", "ready"))
        assert [(e.record.id, e.record.state) for e in log.workspaces()] == [("ws_a", "ready"), ("ws_b", "ready")]
        assert log.get("ws_missing") is None
    finally:
        log.close()


def test_a_failing_publisher_does_not_lose_the_write(tmp_path: Path) -> None:
    def explode(event: Event) -> None:
        raise RuntimeError("subscriber gone")

    log = StateLog(tmp_path, on_commit=explode)
    try:
        assert log.put_workspace(entry("ws_a")).seq == 1
        assert log.get("ws_a") is not None
    finally:
        log.close()


def test_events_in_the_log_are_exactly_what_was_published(tmp_path: Path) -> None:
    published: list[Event] = []
    log = StateLog(tmp_path, on_commit=published.append)
    try:
        log.put_workspace(entry("ws_a"), reason="because")
        stored = list(log.events())
        assert stored == published
        assert msgspec.structs.asdict(stored[0])["reason"] == "because"
    finally:
        log.close()
