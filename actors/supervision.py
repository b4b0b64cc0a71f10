"""Supervision on pykka, with OTP semantics: child specs, supervised actors, the name table.

pykka has actors but no supervision, so this module provides it:

- ``ChildSpec``: how to start a child, its name and its restart type (``permanent``:
  always restarted; ``transient``: restarted only after a crash; ``temporary``: never).
- ``ChildActor``: the base of supervised actors; it tells its supervisor when it exits,
  normally or by crashing (an exception in ``on_start`` or in a told message).
- ``Registry``: the name table. Peers look actors up by name for every message, never
  keeping a reference, so a restarted child is found at once; ``deliver`` also starts a
  child that is not running, through the dynamic supervisor that owns its names.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import msgspec
import pykka

from actors.ticker import Ticker
from runtime.errors import ProviderUnavailable

__all__ = [
    "ChildActor",
    "ChildExited",
    "ChildSpec",
    "Registry",
    "Restart",
    "SpecFor",
    "StartChild",
    "Sync",
    "child_spec",
]

log = logging.getLogger(__name__)

Restart = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts (and restarts) one child.

    Attributes:
        name: Unique name in the registry, e.g. ``provider:gvisor`` or ``workspace:ws_1``.
        start: Starts the actor given the supervisor's ref and returns the child's ref.
        restart: When the child is restarted after it exits.
    """

    name: str
    start: Callable[[pykka.ActorRef[Any]], pykka.ActorRef[Any]]
    restart: Restart = "permanent"


SpecFor = Callable[[str], ChildSpec]
"""How a dynamic supervisor makes the spec of a child it starts on demand, by name."""


def child_spec(name: str, actor: type[ChildActor], *args: Any, restart: Restart = "permanent") -> ChildSpec:
    """The spec of a child started as ``actor.start(supervisor, *args)``."""

    def start(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        return actor.start(supervisor, *args)

    return ChildSpec(name, start, restart)


class StartChild(msgspec.Struct, frozen=True, tag="sup.start"):
    """Start ``spec`` unless a child of that name runs, then tell it ``then`` (if set)."""

    spec: Any
    then: Any = None


class ChildExited(msgspec.Struct, frozen=True, tag="sup.exited"):
    """A child's last words: it stopped normally (``crashed=False``) or crashed."""

    name: str
    urn: str
    crashed: bool
    reason: str = ""


class Sync(msgspec.Struct, frozen=True, tag="sup.sync"):
    """Asked to learn that an actor has started and drained what came before (answers True)."""


class Registry:
    """Thread-safe name table; written only by supervisors, read by anyone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._owners: dict[str, tuple[pykka.ActorRef[Any], SpecFor]] = {}

    def get(self, name: str) -> pykka.ActorRef[Any] | None:
        """The running actor registered as ``name``, if any."""
        with self._lock:
            return self._refs.get(name)

    def names(self, prefix: str = "") -> list[str]:
        """Registered names starting with ``prefix``."""
        with self._lock:
            return [name for name in self._refs if name.startswith(prefix)]

    def put(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Register ``ref`` under ``name`` (supervisors only)."""
        with self._lock:
            self._refs[name] = ref

    def remove(self, name: str, urn: str) -> bool:
        """Unregister ``name`` if it still points at actor ``urn`` (supervisors only)."""
        with self._lock:
            ref = self._refs.get(name)
            if ref is None or ref.actor_urn != urn:
                return False
            del self._refs[name]
            return True

    def own(self, prefix: str, supervisor: pykka.ActorRef[Any], spec_for: SpecFor) -> None:
        """``supervisor`` starts, on demand, the children whose names start with ``prefix``."""
        with self._lock:
            self._owners[prefix] = (supervisor, spec_for)

    def disown(self, prefix: str, supervisor: pykka.ActorRef[Any]) -> None:
        """``supervisor`` no longer starts children for ``prefix`` (it is stopping)."""
        with self._lock:
            owner = self._owners.get(prefix)
            if owner is not None and owner[0].actor_urn == supervisor.actor_urn:
                del self._owners[prefix]

    def tell(self, name: str, message: Any) -> bool:
        """Tell the actor registered as ``name``; ``False`` if none is running."""
        ref = self.get(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True

    def deliver(self, name: str, message: Any) -> None:
        """Tell ``name`` the ``message``, having its owning supervisor start it if it is not running.

        Raises:
            ProviderUnavailable: No supervisor starts ``name`` (the runtime is stopping).
        """
        if self.tell(name, message):
            return
        with self._lock:
            owner = next((owner for prefix, owner in self._owners.items() if name.startswith(prefix)), None)
        if owner is not None:
            supervisor, spec_for = owner
            try:
                supervisor.tell(StartChild(spec_for(name), then=message))
                return
            except pykka.ActorDeadError:
                pass
        raise ProviderUnavailable(f"{name} cannot be started: the runtime is stopping")


class ChildActor(pykka.ThreadingActor):
    """Base of every supervised actor.

    Subclasses implement ``started``, ``stopped`` and ``handle`` instead of pykka's hooks.
    ``stopped`` runs on every exit, normal or crash, and must tolerate a partial start.

    Args:
        supervisor: The supervisor to report the exit to.
        name: This child's registry name.
    """

    def __init__(self, supervisor: pykka.ActorRef[Any], name: str) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.name = name
        self._tickers: list[Ticker] = []

    def every(self, interval_s: float, message: Any) -> None:
        """Tell this actor ``message`` every ``interval_s`` seconds until it stops."""
        actor = self.actor_ref
        self._tickers.append(Ticker(interval_s, lambda: actor.tell(message), f"{self.name}-ticker").start())

    def started(self) -> None:
        """Set up, in the actor's own thread, before the first message."""

    def stopped(self) -> None:
        """Release what ``started`` took, in the actor's own thread."""

    def handle(self, message: Any) -> Any:
        """Handle one message."""
        log.warning("%s ignored an unexpected message %r", self.name, type(message).__name__)

    def on_start(self) -> None:
        try:
            self.started()
        except BaseException as exc:
            self._cleanup()
            self._report(crashed=True, reason=f"start failed: {exc!r}")
            raise

    def on_stop(self) -> None:
        self._cleanup()
        self._report(crashed=False)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._cleanup()
        self._report(crashed=True, reason=repr(exception_value))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Sync):
            return True
        return self.handle(message)

    def _cleanup(self) -> None:
        for ticker in self._tickers:
            ticker.stop()
        try:
            self.stopped()
        except Exception:
            log.exception("%s failed while stopping", self.name)

    def _report(self, *, crashed: bool, reason: str = "") -> None:
        with contextlib.suppress(pykka.ActorDeadError):  # the supervisor itself is stopping
            self.supervisor.tell(ChildExited(self.name, self.actor_urn, crashed, reason))
