"""The warm pool's shared state: which members are booting, which are ready to claim.

Members are ordinary workspaces of the default image and resources, created ahead of
demand and recorded in the state log with ``pooled=True``. A claim takes a ready member
at once (it never waits for a boot) and turns it into the requested workspace; the
PoolActor refills in the background. Everything here is thread-safe: the ProviderActor
claims, WorkspaceActors report boots, the PoolActor refills, ``stats`` reads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping

import msgspec

from runtime.config import Settings, parse_size
from runtime.messages import CreateArgs, StoredWorkspace

__all__ = ["Pool", "PoolStats", "adopt", "adopt_pool_members", "matches_pool"]


def matches_pool(settings: Settings, args: CreateArgs, provider: str = "") -> bool:
    """Whether ``args`` asks for the pool's shape: ``provider``'s default image, CPU, memory and disk.

    Env, labels, TTL and persistence are applied to a claimed member, so they may vary.
    """

    def same_size(value: int | str | None, default: int) -> bool:
        if value is None:
            return True
        try:
            return parse_size(value) == default
        except ValueError:
            return False  # the cold path reports the bad value

    return (
        args.image in (None, settings.default_image_for(provider))
        and (args.cpu is None or float(args.cpu) == settings.default_cpu)
        and same_size(args.memory, settings.default_memory)
        and same_size(args.disk, settings.default_disk)
    )


def adopt(member: StoredWorkspace, wanted: StoredWorkspace) -> StoredWorkspace:
    """A claimed pool member made into the workspace ``wanted`` describes.

    The member keeps its identity, container and resources (they match, or it would not
    have been claimed); it takes the request's labels, env, persistence, expiry, fallback
    and request key, and its life as the requester's workspace starts now.
    """
    record = msgspec.structs.replace(
        member.record,
        labels=wanted.record.labels,
        persistent=wanted.record.persistent,
        created_at=wanted.record.created_at,
        expires_at=wanted.record.expires_at,
        fallback_from=wanted.record.fallback_from,
        from_pool=True,
    )
    spec = msgspec.structs.replace(member.spec, env=wanted.spec.env, labels=wanted.spec.labels)
    return msgspec.structs.replace(member, record=record, spec=spec, pooled=False, request=wanted.request)


class PoolStats(msgspec.Struct, frozen=True):
    """The pool as ``stats`` reports it."""

    size: int
    target: int
    booting: int
    claims: int
    misses: int
    refill_failures: int
    evictions: int


class Pool:
    """One provider's pool.

    Args:
        target: How many ready members to keep (``WORKSPACE_WARM_POOL_SIZE``).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._ready: deque[str] = deque()
        self._booting: set[str] = set()
        self._claims = self._misses = self._refill_failures = self._evictions = 0

    # ------------------------------------------------------------------ claims

    def claim(self) -> str | None:
        """Take the oldest ready member for a create (``None``, a miss, if there is none)."""
        with self._lock:
            if self._ready:
                self._claims += 1
                return self._ready.popleft()
            self._misses += 1
            return None

    def evict(self) -> str | None:
        """Take a ready member to destroy, so its capacity slot can serve a cold create."""
        with self._lock:
            if not self._ready:
                return None
            self._evictions += 1
            return self._ready.pop()

    # ------------------------------------------------------------------ membership

    def deficit(self) -> int:
        """How many members to start now: one at a time, until the target is reached.

        Boots are serialised: starting several sandboxes at once saturates a small host's
        CPUs, and claims served meanwhile would pay for it.
        """
        with self._lock:
            missing = self.target - len(self._ready) - len(self._booting)
            return max(0, min(missing, 1 - len(self._booting)))

    def booting(self, workspace_id: str) -> None:
        """A member is being created."""
        with self._lock:
            self._booting.add(workspace_id)

    def ready(self, workspace_id: str) -> None:
        """A member is ready to be claimed."""
        with self._lock:
            self._booting.discard(workspace_id)
            if workspace_id not in self._ready:
                self._ready.append(workspace_id)

    def failed(self, workspace_id: str) -> None:
        """A member could not be created."""
        with self._lock:
            self._booting.discard(workspace_id)
            self._refill_failures += 1

    def remove(self, workspace_id: str) -> None:
        """A member ended (failed, destroyed) without being claimed."""
        with self._lock:
            self._booting.discard(workspace_id)
            if workspace_id in self._ready:
                self._ready.remove(workspace_id)

    def stats(self) -> PoolStats:
        """Counters and sizes."""
        with self._lock:
            return PoolStats(
                size=len(self._ready),
                target=self.target,
                booting=len(self._booting),
                claims=self._claims,
                misses=self._misses,
                refill_failures=self._refill_failures,
                evictions=self._evictions,
            )


def adopt_pool_members(
    settings: Settings, entries: Iterable[StoredWorkspace], pools: Mapping[str, Pool]
) -> list[tuple[str, str]]:
    """At start, take back the pool members the log lists; return those to destroy.

    A ready member rejoins its provider's pool while the pool is below target and the
    member still has the configured default shape; the others (the pool shrank or was
    turned off, the defaults changed, or the member was caught half-created) are
    returned with the reason to destroy them.
    """
    unwanted = []
    for entry in entries:
        record = entry.record
        if not entry.pooled or record.state not in ("ready", "creating"):
            continue
        pool = pools.get(record.provider)
        same_shape = (record.image, record.cpu, record.memory_bytes, record.disk_bytes) == (
            settings.default_image_for(record.provider),
            settings.default_cpu,
            settings.default_memory,
            settings.default_disk,
        )
        if record.state == "creating":
            unwanted.append((record.id, "a pool member left half-created by the last run"))
        elif pool is None or pool.stats().size >= pool.target or not same_shape:
            unwanted.append((record.id, "a pool member no longer wanted at start"))
        else:
            pool.ready(record.id)
    return unwanted
