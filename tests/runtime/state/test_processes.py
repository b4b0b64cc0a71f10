"""The table of streamed processes: numbering, kept output, truncation, limits."""

from __future__ import annotations

import msgspec
import pytest

from runtime.errors import CapacityExceeded, NotFound
from runtime.state.processes import MAX_RUNNING, ProcessTable


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.events.append((topic, msgspec.msgpack.decode(payload)))


def test_output_and_exit_are_published_in_order_with_their_own_numbering() -> None:
    published = Published()
    table = ProcessTable(published)
    info, sink = table.register("ws_a", ["make"], stdin_open=False)
    table.started(info, 42)
    sink.output("stdout", b"one")
    sink.output("stderr", b"two")
    sink.exited(2, False, 12.5, None)
    sink.output("stdout", b"after the end is ignored")
    topics = {topic for topic, _ in published.events}
    assert topics == {f"exec.ws_a.{info.process_id}"}
    kinds = [(event["type"], event["seq"], event.get("data")) for _, event in published.events]
    assert kinds == [("exec.output", 1, b"one"), ("exec.output", 2, b"two"), ("exec.exit", 3, None)]
    [listed] = table.list("ws_a")
    assert (listed.pid, listed.running, listed.exit_code, listed.stdout_bytes, listed.stderr_bytes) == (
        42, False, 2, 3, 3,
    )  # fmt: skip


def test_replay_keeps_the_newest_output_and_counts_what_it_dropped() -> None:
    table = ProcessTable(Published(), limit=10)
    info, sink = table.register("ws_a", ["yes"], stdin_open=False)
    for n in range(6):
        sink.output("stdout", b"%d---" % n)  # 5 bytes each: the newest two fit in 10
    page = table.output("ws_a", info.process_id, after=0)
    assert [chunk.seq for chunk in page.chunks] == [5, 6]
    assert page.truncated == 4 and page.exit is None
    assert table.output("ws_a", info.process_id, after=5).truncated == 0
    assert [chunk.data for chunk in table.output("ws_a", info.process_id, after=5).chunks] == [b"5---"]
    sink.exited(0, False, 1.0, None)
    ended = table.output("ws_a", info.process_id, after=6)
    assert ended.chunks == [] and ended.exit is not None and ended.exit.seq == 7


def test_a_workspace_runs_a_bounded_number_of_streamed_processes() -> None:
    table = ProcessTable(Published())
    sinks = [table.register("ws_a", ["sleep"], stdin_open=False)[1] for _ in range(MAX_RUNNING)]
    with pytest.raises(CapacityExceeded):
        table.register("ws_a", ["sleep"], stdin_open=False)
    table.register("ws_b", ["sleep"], stdin_open=False)  # another workspace has its own budget
    sinks[0].exited(None, False, 0.0, "lost")
    table.register("ws_a", ["sleep"], stdin_open=False)


def test_unknown_and_forgotten_processes_are_not_found() -> None:
    table = ProcessTable(Published())
    info, _ = table.register("ws_a", ["sleep"], stdin_open=False)
    with pytest.raises(NotFound):
        table.get("ws_a", "proc_nope")
    with pytest.raises(NotFound):
        table.get("ws_b", info.process_id)
    table.forget("ws_a")
    assert table.list("ws_a") == []
    with pytest.raises(NotFound):
        table.output("ws_a", info.process_id)
