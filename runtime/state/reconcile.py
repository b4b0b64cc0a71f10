"""Reconciliation: converge the state log (what was promised) with a provider (what exists).

``plan`` compares one provider's records with its inventory and says what to do:

- ``adopted``: ready records whose workspace runs; nothing to do, they are served as is;
- ``vanished``: ready records whose workspace is gone or stopped; they become ``failed``
  with the reason;
- ``interrupted``: records left ``creating`` or ``stopping`` by a runtime that stopped
  mid-way; a create is rolled back (nothing acknowledged it) and a destroy is finished;
- ``orphans``: what carries this runtime's labels but has no live record; it is removed.

``converge`` carries a plan out at start-up, before any actor runs, so it may write the
records itself (``reconcile_at_start`` does so for every provider at once); later
reconciliations (a provider coming back) go through the actors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec

from runtime.errors import WorkspaceError
from runtime.messages import BackendState, Event, State, StoredWorkspace
from runtime.providers.base import Provider
from runtime.state.statelog import StateLog

__all__ = ["Plan", "converge", "interrupted_reason", "plan", "reconcile_at_start"]

log = logging.getLogger(__name__)

_WORKERS = 4


@dataclass
class Plan:
    """What reconciling one provider takes (see the module docstring)."""

    provider: str
    adopted: list[str] = field(default_factory=list)
    vanished: list[tuple[StoredWorkspace, str]] = field(default_factory=list)
    interrupted: list[StoredWorkspace] = field(default_factory=list)
    orphans: list[BackendState] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log."""
        return (
            f"{len(self.adopted)} adopted, {len(self.vanished)} failed (gone), "
            f"{len(self.interrupted)} interrupted create/destroy finished, {len(self.orphans)} orphan(s) removed"
        )


def interrupted_reason(state: str) -> str:
    """Why an interrupted workspace is destroyed, by the state it was left in."""
    if state == "creating":
        return "its create was interrupted (the runtime or its actor stopped); rolled back"
    return "its destroy was interrupted (the runtime or its actor stopped); finished"


def plan(provider: str, entries: Iterable[StoredWorkspace], inventory: dict[str, BackendState]) -> Plan:
    """What converging ``provider``'s records with its ``inventory`` takes."""
    result = Plan(provider)
    recorded: set[str] = set()
    for entry in entries:
        record = entry.record
        if record.provider != provider:
            continue
        if record.state != "destroyed":
            recorded.add(record.id)
        backend = inventory.get(record.id)
        if record.state == "ready":
            if backend is None:
                result.vanished.append((entry, "the workspace's container no longer exists"))
            elif not backend.running:
                result.vanished.append((entry, backend.detail or "the workspace's container is not running"))
            else:
                result.adopted.append(record.id)
        elif record.state in ("creating", "stopping"):
            result.interrupted.append(entry)
    result.orphans = [state for workspace_id, state in inventory.items() if workspace_id not in recorded]
    return result


def converge(result: Plan, statelog: StateLog, provider: Provider, inventory: dict[str, BackendState]) -> None:
    """Carry out ``result`` at start-up: write the records, remove what must go.

    Removals run a few at a time; a removal that fails leaves the record ``failed``
    with the reason (the reaper and a later ``destroy`` retry it).
    """
    # Submitted together, the state log commits them in a few group commits.
    written = [
        _submit(statelog, entry, "failed", error=reason, reason=f"reconciled at start: {reason}")
        for entry, reason in result.vanished
    ]
    for future in written:
        future.result()

    def finish(entry: StoredWorkspace) -> None:
        state = entry.record.state
        if state == "creating":  # a roll back: the create never answered, a retry runs it anew
            entry = msgspec.structs.replace(entry, request="")
        backend = inventory.get(entry.record.id)
        handle = entry.handle or (backend.handle if backend is not None else "")
        try:
            if handle:
                provider.destroy(handle)
        except WorkspaceError as exc:
            error = f"destroy failed: {exc.message}"
            _submit(statelog, entry, "failed", error=error, reason=interrupted_reason(state)).result()
            return
        _submit(statelog, entry, "destroyed", error=entry.record.error, reason=interrupted_reason(state)).result()

    def remove(orphan: BackendState) -> None:
        try:
            provider.destroy(orphan.handle)
        except WorkspaceError as exc:
            log.error("could not remove %s (no live record): %s", orphan.handle, exc.message)
            return
        log.info("removed %s: it carries this runtime's labels but has no live record", orphan.handle)

    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="reconcile") as pool:
        done = [pool.submit(finish, entry) for entry in result.interrupted]
        done += [pool.submit(remove, orphan) for orphan in result.orphans]
        for work in done:
            work.result()


def reconcile_at_start(statelog: StateLog, providers: Mapping[str, Provider]) -> set[str]:
    """Converge the state log with every provider, in parallel; return those that were down.

    Runs before any actor exists, so it writes records directly. A provider that
    cannot be listed now is reconciled by its ProviderActor once it answers.
    """
    entries = statelog.workspaces()
    unreconciled: set[str] = set()

    def one(name: str, provider: Provider) -> None:
        began = time.monotonic()
        try:
            inventory = provider.inventory()
            found = plan(name, entries, inventory)
            converge(found, statelog, provider, inventory)
        except Exception as exc:
            unreconciled.add(name)
            reason = exc.message if isinstance(exc, WorkspaceError) else repr(exc)
            log.warning("provider %s cannot be reconciled now (%s); it will be once it answers", name,
                        reason)  # fmt: skip
            return
        log.info("reconciled provider %s in %.0f ms: %s", name, (time.monotonic() - began) * 1000,
                 found.summary())  # fmt: skip

    threads = [threading.Thread(target=one, args=item, name=f"reconcile-{item[0]}") for item in providers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return unreconciled


def _submit(
    statelog: StateLog, entry: StoredWorkspace, state: State, *, error: str | None, reason: str
) -> Future[Event]:
    record = msgspec.structs.replace(entry.record, state=state, error=error)
    log.info("workspace %s is %s: %s", record.id, state, reason)
    return statelog.submit_workspace(msgspec.structs.replace(entry, record=record), reason=reason)
