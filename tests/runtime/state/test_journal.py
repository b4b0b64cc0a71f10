"""The request journal on a real LMDB environment: durable, runs told apart, pruned."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import lmdb
import pytest

from runtime.errors import InternalError
from runtime.state import journal as journal_module
from runtime.state.journal import PRUNE_BATCH, RETENTION_S
from runtime.state.statelog import StateLog

KEY = "636c69656e74:req-1"


def test_an_entry_is_durable_once_waited_for_and_a_new_run_sees_it_as_an_earlier_runs(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    log.journal.begin(KEY, "exec")
    log.journal.wait(KEY)
    entry = log.journal.get(KEY)
    assert entry is not None and (entry.op, entry.boot) == ("exec", log.boot_id)
    assert log.journal.previous_run(KEY) is None  # begun by this run: not refused
    first_boot = log.boot_id
    log.close()

    reopened = StateLog(tmp_path)
    try:
        assert reopened.boot_id != first_boot
        assert reopened.instance_id == log.instance_id
        earlier = reopened.journal.previous_run(KEY)
        assert earlier is not None and (earlier.op, earlier.boot) == ("exec", first_boot)
        assert reopened.journal.previous_run("636c69656e74:req-2") is None
    finally:
        reopened.close()


def test_another_process_reads_the_entry_once_wait_returns(tmp_path: Path) -> None:
    # Durable means committed to the file: another process opening the environment sees it.
    log = StateLog(tmp_path)
    try:
        log.journal.begin(KEY, "git_clone")
        log.journal.wait(KEY)
        script = (
            "import lmdb, sys\n"
            "env = lmdb.open(sys.argv[1], readonly=True, max_dbs=8)\n"
            "with env.begin(db=env.open_db(b'journal', create=False)) as txn:\n"
            "    print(txn.get(sys.argv[2].encode()) is not None)\n"
        )
        found = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path), f"k{KEY}"], capture_output=True, text=True, check=True
        )
        assert found.stdout.strip() == "True"
    finally:
        log.close()


def test_an_empty_key_is_never_journaled_or_matched(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    try:
        log.journal.wait("")  # nothing to wait for
        assert log.journal.get("") is None
        assert log.journal.previous_run("") is None
    finally:
        log.close()


def test_a_key_begun_again_in_the_same_run_keeps_one_entry_with_the_newer_time(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    try:
        log.journal.begin(KEY, "exec").result(5)
        first = log.journal.get(KEY)
        log.journal.begin(KEY, "exec").result(5)
        second = log.journal.get(KEY)
        assert first is not None and second is not None and second.at >= first.at
        assert len(log.journal) == 1
        assert log.journal.prune(now=second.at + RETENTION_S + 1).result(5) == 1
        assert len(log.journal) == 0
    finally:
        log.close()


def test_pruning_removes_entries_older_than_the_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    try:
        for n in range(5):
            log.journal.begin(f"{KEY}-{n}", "exec")
        log.journal.wait(f"{KEY}-4")
        newest = log.journal.get(f"{KEY}-4")
        assert newest is not None
        assert log.journal.prune().result(5) == 0  # none is an hour old
        assert len(log.journal) == 5
        assert log.journal.prune(now=newest.at + RETENTION_S + 1).result(5) == 5
        assert len(log.journal) == 0
        assert log.journal.get(f"{KEY}-0") is None
    finally:
        log.close()


def test_a_large_backlog_is_pruned_in_several_batches(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    try:
        count = PRUNE_BATCH * 2 + 17
        for n in range(count):
            log.journal.begin(f"{KEY}-{n}", "exec")
        log.journal.wait(f"{KEY}-{count - 1}")
        assert len(log.journal) == count
        assert log.journal.prune(now=time.time() + RETENTION_S + 1).result(10) == count
        assert len(log.journal) == 0
    finally:
        log.close()


def test_old_entries_are_pruned_when_the_log_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = StateLog(tmp_path)
    hours_ago = time.time() - RETENTION_S - 60
    # Entries written "an hour ago": the journal's clock only is set back.
    monkeypatch.setattr(journal_module, "time", types.SimpleNamespace(time=lambda: hours_ago, monotonic=time.monotonic))
    old = PRUNE_BATCH + 5
    for n in range(old):
        log.journal.begin(f"{KEY}-old-{n}", "exec")
    log.journal.wait(f"{KEY}-old-{old - 1}")
    monkeypatch.undo()
    log.journal.begin(f"{KEY}-new", "mcp_call")
    log.journal.wait(f"{KEY}-new")
    log.close()

    reopened = StateLog(tmp_path)
    try:
        assert len(reopened.journal) == 1
        assert reopened.journal.get(f"{KEY}-old-0") is None
        kept = reopened.journal.previous_run(f"{KEY}-new")
        assert kept is not None and kept.op == "mcp_call"
    finally:
        reopened.close()


def test_a_journal_write_that_fails_is_reported_to_its_waiter(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    try:
        # Hold the writer inside a transaction, so what is queued next commits as one batch.
        inside, release = threading.Event(), threading.Event()
        log.submit_txn(lambda txn: inside.set() or release.wait(5))
        assert inside.wait(5)

        def broken(txn: lmdb.Transaction) -> None:
            raise ValueError("injected fault")

        failing = log.submit_txn(broken)
        log.journal.begin(KEY, "exec")
        release.set()
        with pytest.raises(InternalError, match="injected fault"):
            failing.result(5)
        with pytest.raises(InternalError, match="could not be journaled, so it was not run"):
            log.journal.wait(KEY)
        assert log.journal.get(KEY) is None  # the batch was aborted as a whole
        log.journal.begin(KEY, "exec")  # and the writer lives on
        log.journal.wait(KEY)
        entry = log.journal.get(KEY)
        assert entry is not None and (entry.op, entry.boot) == ("exec", log.boot_id)
    finally:
        log.close()


def test_a_closed_log_refuses_to_journal(tmp_path: Path) -> None:
    log = StateLog(tmp_path)
    log.close()
    with pytest.raises(InternalError, match="closed"):
        log.journal.begin(KEY, "exec")
