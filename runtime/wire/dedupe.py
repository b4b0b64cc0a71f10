"""Exactly-once answers: requests retried with the same id are not executed twice.

The Gateway keys every request by the client's ROUTER identity and the request ``id``.
A key it has never seen is executed; a key still in flight is dropped (the reply on its
way answers the retry too: same identity, same id); a key already answered gets the same
reply bytes again. Replies of read-only ops, and retryable errors (nothing was done), are
not kept: running those again is harmless. Kept replies are bounded in number, bytes and age, oldest dropped first; a
reply too large to keep is replaced by an error saying so, so a retry is still never run.

Only the Gateway thread uses a table, and it lives as long as the run. Across restarts,
``create`` stays exactly-once through the request key stored with the workspace (see
``ReplyTo.key``), and the ops whose second run would differ (``exec``, ``exec_stdin``,
``git_clone``, ``mcp_call``) are at-most-once through the state log's request journal.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

from runtime.errors import Conflict
from runtime.wire.outbox import encode_error

__all__ = ["KEPT_OPS", "PENDING", "RequestTable"]

KEPT_OPS: Final = frozenset({
    "create", "destroy", "exec", "exec_stdin", "exec_kill", "write_file", "extend", "git_clone", "mcp_call",
    "github_app_set", "github_app_delete", "github_key_rotate",
})  # fmt: skip
"""Ops whose replies are kept for retries: every op that changes something (a tool call included)."""

PENDING: Final = object()
"""``RequestTable.begin``'s answer for a request still in flight."""

_MAX_ENTRIES = 10_000
_MAX_BYTES = 64 << 20
_MAX_REPLY_BYTES = 8 << 20
_MAX_AGE_S = 600.0


class RequestTable:
    """Requests in flight and the kept replies of answered ones.

    Args:
        max_entries: Kept replies at most.
        max_bytes: Bytes of kept replies at most.
        max_reply_bytes: Larger replies are replaced by a short error.
        max_age_s: Kept replies older than this are dropped.
    """

    def __init__(
        self,
        *,
        max_entries: int = _MAX_ENTRIES,
        max_bytes: int = _MAX_BYTES,
        max_reply_bytes: int = _MAX_REPLY_BYTES,
        max_age_s: float = _MAX_AGE_S,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_reply_bytes = max_reply_bytes
        self._max_age_s = max_age_s
        self._pending: dict[tuple[bytes, str], tuple[str, float]] = {}  # -> (op, arrived at)
        self._done: OrderedDict[tuple[bytes, str], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def begin(self, identity: bytes, request_id: str, op: str) -> object | bytes | None:
        """Register a request; ``None``: run it, ``PENDING``: drop it, bytes: send them."""
        key = (identity, request_id)
        if key in self._pending:
            return PENDING
        done = self._done.get(key)
        if done is not None:
            if time.monotonic() - done[0] <= self._max_age_s:
                return done[1]
            self._drop(key)
        self._pending[key] = (op, time.monotonic())
        return None

    def finish(self, identity: bytes, request_id: str, reply: bytes, *, keep: bool = True) -> tuple[str, float] | None:
        """The reply to a registered request was sent; keep it if its op changes things.

        ``keep=False`` (a retryable error: nothing was done) lets a retry run again.
        Returns the request's op and how long it took, ``None`` if it was not registered.
        """
        key = (identity, request_id)
        pending = self._pending.pop(key, None)
        if pending is None:
            return None
        op, arrived = pending
        now = time.monotonic()
        if keep and op in KEPT_OPS:
            if len(reply) > self._max_reply_bytes:
                reply = encode_error(
                    request_id,
                    Conflict(
                        f"request {request_id} was executed, but its reply ({len(reply)} bytes) was too large to "
                        "keep for retries; it is not executed again: send a new id to run it again"
                    ),
                )
            self._done[key] = (now, reply)
            self._bytes += len(reply)
            self._evict()
        return op, now - arrived

    def in_flight(self) -> list[tuple[bytes, str]]:
        """The (identity, request id) of every request still waiting for its reply."""
        return list(self._pending)

    def pending_count(self) -> int:
        """How many requests are in flight (safe to read from another thread)."""
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._done)

    def _evict(self) -> None:
        now = time.monotonic()
        while self._done:
            key, (at, _) = next(iter(self._done.items()))
            if len(self._done) <= self._max_entries and self._bytes <= self._max_bytes and now - at <= self._max_age_s:
                return
            self._drop(key)

    def _drop(self, key: tuple[bytes, str]) -> None:
        _, reply = self._done.pop(key)
        self._bytes -= len(reply)
