"""The LMDB state log: what the runtime promised, durable before it is acknowledged.

One LMDB environment with seven databases:

- ``events``: append-only, key = big-endian u64 ``seq``, value = the encoded event.
- ``workspaces``: the current ``StoredWorkspace`` per workspace id.
- ``meta``: ``last_seq`` and the runtime's ``instance`` id.
- ``requests``: request key -> workspace id, for the ``create`` that made each workspace.
- ``secrets``: sealed values by key (GitHub App credentials, encrypted before they come here).
- ``audit``: the events of the audit trail (uses of credentials), by ``seq``.
- ``journal``: the request journal (``runtime.state.journal``): non-idempotent requests
  each run began, so a later run does not run them again.

LMDB allows one writer per environment, so one thread owns all writes: callers
``submit`` changes and get a future; the writer drains whatever is queued into a single
transaction (group commit), commits with ``sync=True`` and resolves the futures. Each
change (record + its event) is atomic; ``seq`` is assigned inside the transaction, so it
is gap-free and strictly increasing across restarts. Reads use their own read
transactions from any thread.
"""

from __future__ import annotations

import logging
import queue
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import lmdb
import msgspec

from runtime.errors import InternalError
from runtime.messages import (
    AnyEvent,
    Event,
    StoredWorkspace,
    WorkspaceStateChanged,
    decode_event,
    decode_stored,
    encode,
)
from runtime.state.journal import PRUNE_BATCH, RequestJournal, Txn, prune_txn

__all__ = ["Change", "StateLog"]

log = logging.getLogger(__name__)

_SEQ = struct.Struct(">Q")
_LAST_SEQ = (1 << 64) - 1  # no event is after it: a client asking "after" it gets none
_MAP_SIZE = 1 << 36  # 64 GiB of address space; the file grows only as data is written.


@dataclass
class Change:
    """One atomic change: the event announcing it, and what it writes.

    Attributes:
        event: Published once committed.
        entry: A workspace's new entry.
        secrets: Sealed values by key (``None`` deletes), e.g. GitHub App credentials.
        audit: Also index the event in the audit trail (``StateLog.audited``).
    """

    event: Event
    entry: StoredWorkspace | None = None
    secrets: dict[str, bytes | None] = field(default_factory=dict)
    audit: bool = False
    future: Future[Event] = field(default_factory=Future)


@dataclass
class _Work:
    """Work run inside the writer's transaction (``StateLog.submit_txn``); no event."""

    apply: Txn
    future: Future[object] = field(default_factory=Future)


_STOP = object()


class StateLog:
    """Owner of the LMDB environment; see the module docstring.

    Args:
        path: Directory of the LMDB environment (created if missing).
        on_commit: Called in the writer thread with each committed event, in ``seq``
            order (the runtime publishes them). Exceptions it raises are logged.
    """

    def __init__(self, path: Path, on_commit: Callable[[Event], None] | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._env = lmdb.open(str(path), map_size=_MAP_SIZE, max_dbs=8, sync=True, metasync=True)
        except lmdb.Error as exc:
            raise InternalError(f"cannot open the state log at {path}: {exc}") from exc
        self._events = self._env.open_db(b"events")
        self._workspaces = self._env.open_db(b"workspaces")
        self._meta = self._env.open_db(b"meta")
        self._requests = self._env.open_db(b"requests")
        self._secrets = self._env.open_db(b"secrets")
        self._audit = self._env.open_db(b"audit")
        journal = self._env.open_db(b"journal")
        with self._env.begin(write=True) as txn:
            raw = txn.get(b"last_seq", db=self._meta)
            self._last_seq = _SEQ.unpack(raw)[0] if raw else 0
            instance = txn.get(b"instance", db=self._meta)
            if instance is None:
                instance = secrets.token_hex(6).encode()
                txn.put(b"instance", instance, db=self._meta)
        self.instance_id: str = instance.decode()
        # The instance id is the same in every run; this one is new each time the log opens.
        self.boot_id: str = secrets.token_hex(8)
        self.journal = RequestJournal(self._env, journal, self.submit_txn, self.boot_id)
        cutoff = time.time() - self.journal.retention_s
        pruned = PRUNE_BATCH
        while pruned == PRUNE_BATCH:  # before the writer starts, so still one writer at a time
            with self._env.begin(write=True) as txn:
                pruned = prune_txn(txn, journal, cutoff, PRUNE_BATCH)
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[Change | _Work | object] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="statelog-writer", daemon=True)
        self._closed = False
        self._writer.start()

    # ------------------------------------------------------------------ writes

    def submit(
        self,
        event: Event,
        entry: StoredWorkspace | None = None,
        *,
        secrets: dict[str, bytes | None] | None = None,
        audit: bool = False,
    ) -> Future[Event]:
        """Queue one change; the future resolves to the event with ``seq`` and ``ts`` set.

        ``secrets`` are written (``None``: deleted) in the same transaction as the event;
        ``audit`` also indexes the event in the audit trail.

        Raises:
            InternalError: The log is closed.
        """
        if self._closed:
            raise InternalError("the state log is closed")
        change = Change(event, entry, dict(secrets or {}), audit)
        self._queue.put(change)
        return change.future

    def submit_txn(self, apply: Txn) -> Future[object]:
        """Queue ``apply`` to run inside the writer's next transaction (no event, no ``seq``).

        The future resolves to what it returns once that transaction is durable.

        Raises:
            InternalError: The log is closed.
        """
        if self._closed:
            raise InternalError("the state log is closed")
        work = _Work(apply)
        self._queue.put(work)
        return work.future

    def submit_workspace(self, entry: StoredWorkspace, reason: str | None = None) -> Future[Event]:
        """Queue a workspace entry with its state-change event; the future resolves when durable."""
        record = entry.record
        event = WorkspaceStateChanged(
            workspace_id=record.id, state=record.state, record=record, reason=reason, pooled=entry.pooled
        )
        return self.submit(event, entry)

    def put_workspace(self, entry: StoredWorkspace, reason: str | None = None, timeout: float = 30.0) -> Event:
        """Persist a workspace entry with its state-change event and wait until durable.

        Raises:
            InternalError: The write failed or did not finish within ``timeout`` seconds.
        """
        return self._durable(self.submit_workspace(entry, reason), timeout)

    def put_secrets(self, event: Event, secrets: dict[str, bytes | None], timeout: float = 30.0) -> Event:
        """Write (``None``: delete) sealed values with the event announcing it, and wait until durable.

        Raises:
            InternalError: The write failed or did not finish within ``timeout`` seconds.
        """
        return self._durable(self.submit(event, secrets=secrets), timeout)

    @staticmethod
    def _durable(future: Future[Event], timeout: float) -> Event:
        try:
            return future.result(timeout)
        except TimeoutError:
            raise InternalError(f"the state log did not commit within {timeout:g} s") from None

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[Change | _Work] = []
            stop = item is _STOP
            if not stop:
                batch.append(item)  # type: ignore[arg-type]
            while not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[Change | _Work]) -> None:
        seq = self._last_seq
        committed: list[Event | object] = []
        try:
            with self._env.begin(write=True) as txn:
                now = time.time()
                for change in batch:
                    if isinstance(change, _Work):
                        committed.append(change.apply(txn))
                        continue
                    seq += 1
                    event = msgspec.structs.replace(change.event, seq=seq, ts=now)
                    encoded = encode(event)
                    txn.put(_SEQ.pack(seq), encoded, db=self._events, append=True)
                    if change.audit:
                        txn.put(_SEQ.pack(seq), encoded, db=self._audit, append=True)
                    for key, sealed in change.secrets.items():
                        if sealed is None:
                            txn.delete(key.encode(), db=self._secrets)
                        else:
                            txn.put(key.encode(), sealed, db=self._secrets)
                    if change.entry is not None:
                        workspace_id = change.entry.record.id.encode()
                        txn.put(workspace_id, encode(change.entry), db=self._workspaces)
                        if change.entry.request:
                            txn.put(change.entry.request.encode(), workspace_id, db=self._requests)
                    committed.append(event)
                txn.put(b"last_seq", _SEQ.pack(seq), db=self._meta)
        except Exception as exc:  # lmdb's errors, or work that failed: the whole batch is aborted, the writer lives on
            log.error("state log commit of %d change(s) failed: %s", len(batch), exc)
            error = InternalError(f"state log write failed: {exc}")
            for change in batch:
                change.future.set_exception(error)
            return
        self._last_seq = seq
        for change, done in zip(batch, committed, strict=True):
            if isinstance(change, _Work):
                change.future.set_result(done)
                continue
            assert isinstance(done, Event)
            event = done
            change.future.set_result(event)
            if self._on_commit is not None:
                try:
                    self._on_commit(event)
                except Exception:
                    log.exception("publishing event seq=%d failed", event.seq)

    # ------------------------------------------------------------------ reads

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest committed event (0 for an empty log)."""
        return self._last_seq

    def get(self, workspace_id: str) -> StoredWorkspace | None:
        """The current entry of a workspace, or ``None`` if the log never saw it."""
        with self._env.begin(db=self._workspaces, buffers=True) as txn:
            raw = txn.get(workspace_id.encode())
            return None if raw is None else decode_stored(raw)

    def created_by(self, request: str) -> StoredWorkspace | None:
        """The workspace the ``create`` with this request key made, unless it was rolled back."""
        with self._env.begin(buffers=True) as txn:
            workspace_id = txn.get(request.encode(), db=self._requests)
            if workspace_id is None:
                return None
            raw = txn.get(workspace_id, db=self._workspaces)
            entry = None if raw is None else decode_stored(raw)
        return entry if entry is not None and entry.request == request else None

    def workspaces(self) -> list[StoredWorkspace]:
        """Every workspace entry, in id order."""
        with self._env.begin(db=self._workspaces, buffers=True) as txn:
            return [decode_stored(value) for value in txn.cursor().iternext(keys=False, values=True)]

    def snapshot(self) -> tuple[int, list[StoredWorkspace]]:
        """Every workspace entry and the ``seq`` of the last event they reflect, read together."""
        with self._env.begin(buffers=True) as txn:
            raw = txn.get(b"last_seq", db=self._meta)
            seq = _SEQ.unpack(raw)[0] if raw else 0
            cursor = txn.cursor(db=self._workspaces)
            return seq, [decode_stored(value) for value in cursor.iternext(keys=False, values=True)]

    def secret(self, key: str) -> bytes | None:
        """A sealed value, or ``None``."""
        with self._env.begin(db=self._secrets) as txn:
            value = txn.get(key.encode())
            return None if value is None else bytes(value)

    def secrets(self, prefix: str) -> dict[str, bytes]:
        """Every sealed value whose key starts with ``prefix``, read together, by key."""
        found: dict[str, bytes] = {}
        with self._env.begin(db=self._secrets) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix.encode()):
                return found
            for key, value in cursor.iternext():
                name = bytes(key).decode()
                if not name.startswith(prefix):
                    break
                found[name] = bytes(value)
        return found

    def audited(self, after: int = 0, limit: int = 100) -> list[AnyEvent]:
        """Up to ``limit`` events of the audit trail with ``seq > after``, oldest first."""
        found: list[AnyEvent] = []
        with self._env.begin(db=self._audit, buffers=True) as txn:
            cursor = txn.cursor()
            if after >= _LAST_SEQ or not cursor.set_range(_SEQ.pack(max(after, -1) + 1)):
                return found
            for value in cursor.iternext(keys=False, values=True):
                found.append(decode_event(value))
                if len(found) >= limit:
                    break
        return found

    def events(self, after: int = 0) -> Iterator[AnyEvent]:
        """Committed events with ``seq > after``, oldest first."""
        with self._env.begin(db=self._events, buffers=True) as txn:
            cursor = txn.cursor()
            if after >= _LAST_SEQ or not cursor.set_range(_SEQ.pack(max(after, -1) + 1)):
                return
            for value in cursor.iternext(keys=False, values=True):
                yield decode_event(value)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Finish queued writes, stop the writer and close the environment."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join()
        self._env.close()
