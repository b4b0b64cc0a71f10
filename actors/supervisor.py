"""Supervisors: the root, and dynamic supervisors for children started on demand.

``Supervisor`` (the root) starts its children in order, restarts them one_for_one and
stops them in reverse. Restart intensity follows OTP: more than ``intensity`` restarts
within ``period_s`` seconds means restarting is not helping, so it stops its whole
subtree and escalates (the runtime then exits non-zero with a clear log line).

``DynamicSupervisor`` is a child of the root that starts children on demand, by name
(``Registry.deliver``): one per workspace. Each child has its own restart intensity: a
child crashing more than ``intensity`` times within ``period_s`` is given up on (and
``on_give_up`` says so) while its siblings carry on, and the dynamic supervisor itself
never escalates for its children. So a burst of crashes among many workspaces - or one
workspace crashing in a loop - never reaches the root, the providers, the pool or the
reaper.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from actors.supervision import ChildActor, ChildExited, ChildSpec, Registry, SpecFor, StartChild, Sync

__all__ = ["CrashReport", "DynamicSupervisor", "RestartWindow", "Supervisor"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0

CrashReport = Callable[[str, str, bool], None]
"""Told, in the supervisor's thread, of every crash: the child's name, why, and whether it restarts."""


class RestartWindow:
    """Restarts within a sliding window of ``period_s`` seconds, against ``intensity``."""

    def __init__(self, intensity: int, period_s: float) -> None:
        self.intensity = intensity
        self.period_s = period_s
        self._times: deque[float] = deque()

    def add(self, now: float | None = None) -> bool:
        """Count a restart; return whether the intensity is now exceeded."""
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.period_s:
            self._times.popleft()
        return len(self._times) > self.intensity

    def __len__(self) -> int:
        return len(self._times)


class _Children:
    """A supervisor's running children, by name, in start order."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._children: dict[str, tuple[ChildSpec, pykka.ActorRef[Any]]] = {}

    def start(self, spec: ChildSpec, supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
        ref = spec.start(supervisor)
        self._children[spec.name] = (spec, ref)
        self.registry.put(spec.name, ref)
        return ref

    def running(self, name: str) -> pykka.ActorRef[Any] | None:
        current = self._children.get(name)
        return current[1] if current is not None and current[1].is_alive() else None

    def exited(self, message: ChildExited) -> ChildSpec | None:
        """The spec of the child that exited, unregistered; ``None`` for an older incarnation."""
        current = self._children.get(message.name)
        if current is None or current[1].actor_urn != message.urn:
            return None  # an older incarnation, or a child being stopped on purpose
        del self._children[message.name]
        self.registry.remove(message.name, message.urn)
        return current[0]

    def stop_all(self) -> None:
        """Stop every child, the last started first."""
        for name in reversed(list(self._children)):
            _, ref = self._children.pop(name)
            self.registry.remove(name, ref.actor_urn)
            try:
                ref.stop(block=True, timeout=_STOP_TIMEOUT_S)
            except pykka.Timeout:
                log.error("%s did not stop within %.0f s", name, _STOP_TIMEOUT_S)
            except pykka.ActorDeadError:
                pass


def _wants_restart(spec: ChildSpec, crashed: bool) -> bool:
    return spec.restart == "permanent" or (spec.restart == "transient" and crashed)


def _report(on_crash: CrashReport | None, message: ChildExited, restart: bool) -> None:
    log.error("%s crashed: %s (%s)", message.name, message.reason, "restarting it" if restart else "not restarted")
    if on_crash is not None:
        try:
            on_crash(message.name, message.reason, restart)
        except Exception:
            log.exception("reporting the crash of %s failed", message.name)


class Supervisor(pykka.ThreadingActor):
    """The root of the actor tree.

    Args:
        registry: The name table this supervisor maintains.
        children: Static children, started in this order when the supervisor starts.
        intensity: Restarts allowed within ``period_s`` before escalating.
        period_s: The sliding window of the restart intensity.
        on_escalate: Called (from the supervisor's thread) with the reason when it gives up.
        on_crash: Told of every crash of a child.
    """

    def __init__(
        self,
        registry: Registry,
        children: Sequence[ChildSpec] = (),
        *,
        intensity: int = 3,
        period_s: float = 10.0,
        on_escalate: Callable[[str], None] | None = None,
        on_crash: CrashReport | None = None,
    ) -> None:
        super().__init__()
        self._static = list(children)
        self._window = RestartWindow(intensity, period_s)
        self._on_escalate = on_escalate
        self._on_crash = on_crash
        self._children = _Children(registry)
        self._escalated = False

    def on_start(self) -> None:
        for spec in self._static:
            self._children.start(spec, self.actor_ref)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Sync):
            return True
        if isinstance(message, StartChild):
            ref = self._children.running(message.spec.name)
            if ref is None and not self._escalated:
                ref = self._children.start(message.spec, self.actor_ref)
            if message.then is not None and ref is not None:
                ref.tell(message.then)
        elif isinstance(message, ChildExited):
            self._child_exited(message)
        else:
            log.warning("supervisor ignored an unexpected message %r", type(message).__name__)
        return None

    def on_stop(self) -> None:
        self._children.stop_all()

    def _child_exited(self, message: ChildExited) -> None:
        spec = self._children.exited(message)
        if spec is None:
            return
        wanted = _wants_restart(spec, message.crashed) and not self._escalated
        exceeded = wanted and self._window.add()
        restart = wanted and not exceeded
        if message.crashed:
            _report(self._on_crash, message, restart)
        if restart:
            self._children.start(spec, self.actor_ref)
        elif exceeded:
            window = self._window
            self._escalate(
                f"restart intensity exceeded: {len(window)} restarts within {window.period_s:g} s "
                f"(last: {message.name}: {message.reason or 'stopped'})"
            )

    def _escalate(self, reason: str) -> None:
        self._escalated = True
        log.critical("supervisor gives up: %s; stopping every actor", reason)
        self._children.stop_all()
        if self._on_escalate is not None:
            self._on_escalate(reason)


class DynamicSupervisor(ChildActor):
    """Starts children on demand by name; restarts each one on its own intensity.

    Args:
        supervisor: Its own supervisor (the root).
        name: Its registry name.
        registry: The name table.
        prefix: The names of the children it owns (``Registry.deliver`` comes here for them).
        spec_for: Makes the spec of the child of a name.
        intensity: Restarts one child may have within ``period_s``; beyond, it is given up on.
        period_s: The sliding window of each child's restart intensity.
        on_crash: Told of every crash of a child.
        on_give_up: Told the name and the reason when a child is not restarted any more.
    """

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        name: str,
        registry: Registry,
        *,
        prefix: str,
        spec_for: SpecFor,
        intensity: int = 3,
        period_s: float = 10.0,
        on_crash: CrashReport | None = None,
        on_give_up: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(supervisor, name)
        self._registry = registry
        self._prefix = prefix
        self._spec_for = spec_for
        self._intensity = intensity
        self._period_s = period_s
        self._on_crash = on_crash
        self._on_give_up = on_give_up
        self._children = _Children(registry)
        self._windows: dict[str, RestartWindow] = {}

    def started(self) -> None:
        self._registry.own(self._prefix, self.actor_ref, self._spec_for)

    def stopped(self) -> None:
        self._registry.disown(self._prefix, self.actor_ref)
        self._children.stop_all()

    def handle(self, message: Any) -> Any:
        if isinstance(message, StartChild):
            ref = self._children.running(message.spec.name)
            if ref is None:
                ref = self._children.start(message.spec, self.actor_ref)
            if message.then is not None:
                ref.tell(message.then)
        elif isinstance(message, ChildExited):
            self._child_exited(message)
        else:
            super().handle(message)

    def _child_exited(self, message: ChildExited) -> None:
        spec = self._children.exited(message)
        if spec is None:
            return
        if not message.crashed:
            self._windows.pop(message.name, None)
            if spec.restart == "permanent":
                self._children.start(spec, self.actor_ref)
            return
        wanted = _wants_restart(spec, crashed=True)
        window = self._windows.setdefault(message.name, RestartWindow(self._intensity, self._period_s))
        exceeded = wanted and window.add()
        restart = wanted and not exceeded
        _report(self._on_crash, message, restart)
        if restart:
            self._children.start(spec, self.actor_ref)
            return
        self._windows.pop(message.name, None)
        if exceeded:
            reason = (
                f"its actor crashed {len(window)} times within {self._period_s:g} s "
                f"(last: {message.reason or 'stopped'})"
            )
            log.error("giving up on %s: %s", message.name, reason)
            if self._on_give_up is not None:
                try:
                    self._on_give_up(message.name, reason)
                except Exception:
                    log.exception("giving up on %s failed", message.name)
