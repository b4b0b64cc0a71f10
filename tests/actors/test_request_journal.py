"""The request journal in the actors: work starts only once journaled, and a later run refuses a retry.

The first tests use the hand-wired harness of ``test_context``; the last runs a real
runtime on the in-memory provider twice on one state directory, as a restart does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from runtime.app import Runtime
from runtime.errors import InternalError
from runtime.messages import Completed, ReplyTo
from tests.actors.test_context import TIMEOUT_S, MakeHarness, harnesses
from tests.actors.test_requests import RawClient
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider

REPLY_TO = ReplyTo(b"client-7", "append-1")


@pytest.fixture
def make_harness(tmp_path: Path, make_settings: MakeSettings) -> Iterator[MakeHarness]:
    with harnesses(tmp_path, make_settings) as make:
        yield make


def test_a_journaled_call_starts_once_its_entry_is_durable(make_harness: MakeHarness) -> None:
    harness = make_harness()
    actor, received = harness.recorder()
    journal = harness.ctx.statelog.journal
    seen: list[Any] = []
    journal.begin(REPLY_TO.key, "exec")
    harness.ctx.run_blocking(actor, "exec", REPLY_TO, lambda: seen.append(journal.get(REPLY_TO.key)) or {})
    [done] = received.wait_for(1)
    assert done == Completed("exec", REPLY_TO, {}, None)
    assert seen[0] is not None and seen[0].op == "exec"


def test_a_call_whose_journal_entry_could_not_be_written_is_not_run(make_harness: MakeHarness) -> None:
    harness = make_harness()
    actor, received = harness.recorder()
    statelog = harness.ctx.statelog
    # Hold the writer in a transaction so the failing work and the entry commit (and abort) together.
    inside, release = threading.Event(), threading.Event()
    statelog.submit_txn(lambda txn: inside.set() or release.wait(TIMEOUT_S))
    assert inside.wait(TIMEOUT_S)

    def broken(txn: lmdb.Transaction) -> None:
        raise ValueError("injected disk fault")

    statelog.submit_txn(broken)
    statelog.journal.begin(REPLY_TO.key, "exec")
    ran: list[bool] = []
    harness.ctx.run_blocking(actor, "exec", REPLY_TO, lambda: ran.append(True))
    release.set()
    [done] = received.wait_for(1)
    assert (done.kind, done.reply_to, done.value) == ("exec", REPLY_TO, None)
    assert isinstance(done.error, InternalError) and "could not be journaled, so it was not run" in done.error.message
    assert ran == []


def test_an_exec_retried_after_a_restart_is_refused_and_not_run_again(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    settings = make_settings()
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        workspace = client.create().id
        raw = RawClient(runtime, identity=b"appender")
        try:
            raw.send("append-1", "exec", {"workspace_id": workspace, "cmd": "echo x >> runs"})
            assert raw.recv()["ok"]
            raw.send("write-1", "write_file", {"workspace_id": workspace, "path": "a", "data": b"1"})
            assert raw.recv()["ok"]
        finally:
            raw.close()
    assert provider.execs == 1

    # The next run: what the first answered is forgotten with its memory, not with its journal.
    with Runtime(settings, providers={"gvisor": provider}) as runtime:
        raw = RawClient(runtime, identity=b"appender")
        try:
            for _ in range(2):  # the refusal itself is kept for further retries
                raw.send("append-1", "exec", {"workspace_id": workspace, "cmd": "echo x >> runs"})
                refused = raw.recv()
                assert not refused["ok"] and refused["error"]["code"] == "conflict"
                assert not refused["error"]["retryable"]
                assert "request append-1 (exec) was in flight when the runtime restarted" in refused["error"]["message"]
            assert provider.execs == 1
            raw.send("write-1", "write_file", {"workspace_id": workspace, "path": "a", "data": b"1"})
            assert raw.recv()["ok"]  # the same bytes again: not journaled
            raw.send("append-2", "exec", {"workspace_id": workspace, "cmd": "echo x >> runs"})
            assert raw.recv()["ok"]
            raw.send("", "exec", {"workspace_id": workspace, "cmd": "echo x >> runs"})
            assert raw.recv()["ok"]  # an empty id: no protection, as before
            assert provider.execs == 3
        finally:
            raw.close()
