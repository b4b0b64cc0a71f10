"""The Gateway's table of requests in flight and kept replies."""

from __future__ import annotations

import msgspec

from runtime.wire.dedupe import PENDING, RequestTable


def test_a_new_request_runs_a_duplicate_in_flight_is_dropped_and_an_answered_one_replayed() -> None:
    table = RequestTable()
    assert table.begin(b"c1", "1", "create") is None
    assert table.begin(b"c1", "1", "create") is PENDING
    table.finish(b"c1", "1", b"reply")
    assert table.begin(b"c1", "1", "create") == b"reply"
    assert table.begin(b"c2", "1", "create") is None  # another client's id 1 is another request


def test_replies_of_read_only_ops_and_retryable_errors_are_not_kept() -> None:
    table = RequestTable()
    table.begin(b"c", "get", "get")
    table.finish(b"c", "get", b"record")
    table.begin(b"c", "busy", "create")
    table.finish(b"c", "busy", b"provider_unavailable", keep=False)
    assert table.begin(b"c", "get", "get") is None
    assert table.begin(b"c", "busy", "create") is None
    assert len(table) == 0


def test_a_reply_too_large_to_keep_is_replaced_by_an_error_so_the_retry_still_does_not_run() -> None:
    table = RequestTable(max_reply_bytes=10)
    table.begin(b"c", "big", "exec")
    table.finish(b"c", "big", b"x" * 11)
    kept = table.begin(b"c", "big", "exec")
    assert isinstance(kept, bytes)
    reply = msgspec.msgpack.decode(kept)
    assert reply["id"] == "big" and reply["error"]["code"] == "conflict"
    assert "too large to keep" in reply["error"]["message"]


def test_kept_replies_are_bounded_oldest_first() -> None:
    table = RequestTable(max_entries=2)
    for request_id in "abc":
        table.begin(b"c", request_id, "exec")
        table.finish(b"c", request_id, request_id.encode())
    assert len(table) == 2
    assert table.begin(b"c", "a", "exec") is None  # forgotten: it would run again
    assert table.begin(b"c", "c", "exec") == b"c"


def test_kept_replies_expire() -> None:
    table = RequestTable(max_age_s=-1.0)  # everything is older than that
    table.begin(b"c", "a", "exec")
    table.finish(b"c", "a", b"a")
    assert table.begin(b"c", "a", "exec") is None


def test_requests_in_flight_are_listed_until_answered() -> None:
    table = RequestTable()
    table.begin(b"c", "a", "exec")
    table.begin(b"c", "b", "read_file")
    table.finish(b"c", "a", b"done")
    assert table.in_flight() == [(b"c", "b")]
    assert table.pending_count() == 1
