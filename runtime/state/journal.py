"""The request journal: which non-idempotent requests each run of the runtime began.

The Gateway's table of kept replies (``runtime.wire.dedupe``) lives in memory, so after a
crash a client retrying an ``exec`` whose reply was lost would run it a second time. The
journal closes that gap: every request of a ``JOURNALED_OPS`` op with a non-empty id is
recorded under its request key (``ReplyTo.key``) with the op, the time and the *boot* id
of the run that began it - a fresh random id each time the state log is opened (the
``instance`` id in ``meta`` is stable across runs, so it cannot tell runs apart). A later
run finding a key begun by another boot refuses it: the first run may have done it.

Writes go through the state log's one writer (``StateLog.submit_txn``) with its
durability (``sync=True``). ``begin`` only queues the write, so the Gateway thread never
waits on the disk; whoever starts the work calls ``wait`` first (a workspace command's
worker thread, see ``ActorContext.run_blocking``), so nothing runs before its entry is
durable, and requests arriving together share one commit.

Entries older than ``RETENTION_S`` are pruned when the log opens and, from then on, at most
once a minute (on a ``begin``), in batches of ``PRUNE_BATCH`` per transaction. The key
space has two halves: ``k<request key>`` -> the entry, and ``t<ms, big-endian><request key>``
-> nothing, an index by time, so pruning reads only what it removes.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final

import lmdb
import msgspec

from runtime.errors import InternalError

__all__ = ["JOURNALED_OPS", "PRUNE_BATCH", "RETENTION_S", "JournalEntry", "RequestJournal"]

JOURNALED_OPS: Final = frozenset({"exec", "exec_stdin", "git_clone", "mcp_call"})
"""Ops whose second run would do something the first did not (see docs/crash-safety.md)."""

RETENTION_S: Final = 3600.0
"""How long an entry is kept: a retry later than this, across a restart, is not recognised."""

PRUNE_BATCH: Final = 1000
"""Entries removed per transaction at most, so a prune never holds the writer for long."""

_PRUNE_EVERY_S = 60.0
_MS = struct.Struct(">Q")
_ENTRY = b"k"
_BY_TIME = b"t"


class JournalEntry(msgspec.Struct, frozen=True, array_like=True, tag="journal.entry"):
    """One begun request: its op, when it began (epoch seconds) and the boot id of that run."""

    op: str
    at: float
    boot: str


_decoder = msgspec.msgpack.Decoder(JournalEntry)
_encoder = msgspec.msgpack.Encoder()

Txn = Callable[[lmdb.Transaction], Any]
"""Work to run inside one of the state log writer's transactions; its return resolves the future."""


class RequestJournal:
    """The journal in one sub-database of the state log's environment; see the module docstring.

    Args:
        env: The state log's LMDB environment (read here; written only through ``submit``).
        db: The journal's sub-database.
        submit: Queues work for the state log's writer (``StateLog.submit_txn``).
        boot: This run's boot id.
        retention_s: How long entries are kept.
    """

    def __init__(
        self,
        env: lmdb.Environment,
        db: Any,
        submit: Callable[[Txn], Future[Any]],
        boot: str,
        retention_s: float = RETENTION_S,
    ) -> None:
        self._env = env
        self._db = db
        self._submit = submit
        self.boot = boot
        self.retention_s = retention_s
        self._pending: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._pruned_at = time.monotonic()

    # ------------------------------------------------------------------ writes

    def begin(self, key: str, op: str) -> Future[Any]:
        """Queue the entry of request ``key`` (``op``, now, this boot); does not wait for the disk.

        Call ``wait(key)`` before starting the work: the future resolves once the entry is durable.
        """
        at = time.time()
        raw_key = key.encode()
        value = _encoder.encode(JournalEntry(op, at, self.boot))

        def put(txn: lmdb.Transaction) -> None:
            old = txn.get(_ENTRY + raw_key, db=self._db)
            if old is not None:  # begun again in this run (after a retryable refusal): one index entry
                txn.delete(_time_key(_decoder.decode(old).at, raw_key), db=self._db)
            txn.put(_ENTRY + raw_key, value, db=self._db)
            txn.put(_time_key(at, raw_key), b"", db=self._db)

        future = self._submit(put)
        with self._lock:
            self._pending[key] = future
        future.add_done_callback(lambda done: self._settled(key, done))
        if time.monotonic() - self._pruned_at >= _PRUNE_EVERY_S:
            self.prune()
        return future

    def _settled(self, key: str, done: Future[Any]) -> None:
        # A failed write stays pending, so the ``wait`` of its request reports it.
        if done.exception() is None:
            with self._lock:
                if self._pending.get(key) is done:
                    del self._pending[key]

    def wait(self, key: str, timeout: float = 30.0) -> None:
        """Return once the entry of ``key`` is durable (at once if none is being written).

        Raises:
            InternalError: The write failed or did not finish within ``timeout`` seconds:
                the request must not run.
        """
        if not key:
            return
        with self._lock:
            future = self._pending.get(key)
        if future is None:
            return
        try:
            future.result(timeout)
        except TimeoutError:
            raise InternalError(f"the request journal did not commit within {timeout:g} s; not run") from None
        except Exception as exc:
            with self._lock:
                if self._pending.get(key) is future:
                    del self._pending[key]
            raise InternalError(f"the request could not be journaled, so it was not run: {exc}") from exc

    def prune(self, now: float | None = None) -> Future[int]:
        """Remove entries older than the retention, one batch per writer transaction.

        The future resolves to how many were removed once none is left to remove.
        """
        self._pruned_at = time.monotonic()
        cutoff = (time.time() if now is None else now) - self.retention_s
        total: Future[int] = Future()
        removed = [0]

        def next_batch(done: Future[Any] | None) -> None:
            if done is not None:
                error = done.exception()
                if error is not None:
                    total.set_exception(error)
                    return
                count: int = done.result()
                removed[0] += count
                if count < PRUNE_BATCH:
                    total.set_result(removed[0])
                    return
            try:
                batch = self._submit(lambda txn: prune_txn(txn, self._db, cutoff, PRUNE_BATCH))
            except InternalError as exc:  # the log closed meanwhile
                total.set_exception(exc)
                return
            batch.add_done_callback(next_batch)

        next_batch(None)
        return total

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> JournalEntry | None:
        """The entry of request ``key``, from any run, or ``None``."""
        if not key:
            return None
        with self._env.begin(db=self._db, buffers=True) as txn:
            raw = txn.get(_ENTRY + key.encode())
            return None if raw is None else _decoder.decode(raw)

    def previous_run(self, key: str) -> JournalEntry | None:
        """The entry of request ``key`` if an earlier run began it (and it is not yet pruned)."""
        entry = self.get(key)
        return entry if entry is not None and entry.boot != self.boot else None

    def __len__(self) -> int:
        with self._env.begin(db=self._db) as txn:
            return int(txn.stat(self._db)["entries"]) // 2


def prune_txn(txn: lmdb.Transaction, db: Any, cutoff: float, limit: int) -> int:
    """Delete up to ``limit`` entries begun before ``cutoff`` inside ``txn``; return how many."""
    cursor = txn.cursor(db=db)
    end = _time_key(cutoff, b"")
    doomed: list[bytes] = []
    if cursor.set_range(_BY_TIME):
        for found in cursor.iternext(keys=True, values=False):
            index_key = bytes(found)
            if not index_key.startswith(_BY_TIME) or index_key >= end or len(doomed) >= limit:
                break
            doomed.append(index_key)
    for index_key in doomed:
        txn.delete(index_key, db=db)
        entry_key = _ENTRY + index_key[1 + _MS.size :]
        raw = txn.get(entry_key, db=db)
        if raw is not None and _decoder.decode(raw).at < cutoff:
            txn.delete(entry_key, db=db)
    return len(doomed)


def _time_key(at: float, raw_key: bytes) -> bytes:
    return _BY_TIME + _MS.pack(max(0, int(at * 1000))) + raw_key
