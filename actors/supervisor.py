"""The Supervisor: starts children in order, restarts them one_for_one, stops in reverse.

Restart intensity follows OTP: more than ``intensity`` restarts within ``period_s``
seconds means restarting is not helping, so the Supervisor stops its whole subtree and
escalates (the runtime then exits non-zero with a clear log line).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from actors.supervision import ChildExited, ChildSpec, Registry, StartChild, Sync

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0


class Supervisor(pykka.ThreadingActor):
    """The root of the actor tree.

    Args:
        registry: The name table this supervisor maintains.
        children: Static children, started in this order when the supervisor starts.
        intensity: Restarts allowed within ``period_s`` before escalating.
        period_s: The sliding window of the restart intensity.
        on_escalate: Called (from the supervisor's thread) with the reason when it gives up.
        on_crash: Called (from the supervisor's thread) with the child's name, the reason
            and whether it is restarted, for every crash.
    """

    def __init__(
        self,
        registry: Registry,
        children: Sequence[ChildSpec] = (),
        *,
        intensity: int = 3,
        period_s: float = 10.0,
        on_escalate: Callable[[str], None] | None = None,
        on_crash: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        super().__init__()
        self._registry = registry
        self._static = list(children)
        self._intensity = intensity
        self._period_s = period_s
        self._on_escalate = on_escalate
        self._on_crash = on_crash
        self._children: dict[str, tuple[ChildSpec, pykka.ActorRef[Any]]] = {}
        self._restarts: deque[float] = deque()
        self._escalated = False

    def on_start(self) -> None:
        for spec in self._static:
            self._start(spec)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Sync):
            return True
        if isinstance(message, StartChild):
            self._start_child(message)
        elif isinstance(message, ChildExited):
            self._child_exited(message)
        else:
            log.warning("supervisor ignored an unexpected message %r", type(message).__name__)
        return None

    def on_stop(self) -> None:
        self._stop_children()

    # ------------------------------------------------------------------ children

    def _start(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        ref = spec.start(self.actor_ref)
        self._children[spec.name] = (spec, ref)
        self._registry.put(spec.name, ref)
        return ref

    def _start_child(self, message: StartChild) -> None:
        spec: ChildSpec = message.spec
        current = self._children.get(spec.name)
        ref = current[1] if current is not None and current[1].is_alive() else None
        if ref is None and not self._escalated:
            ref = self._start(spec)
        if message.then is not None and ref is not None:
            ref.tell(message.then)

    def _child_exited(self, message: ChildExited) -> None:
        current = self._children.get(message.name)
        if current is None or current[1].actor_urn != message.urn:
            return  # an older incarnation, or a child we are stopping ourselves
        spec, _ = current
        self._registry.remove(message.name, message.urn)
        wanted = spec.restart == "permanent" or (spec.restart == "transient" and message.crashed)
        exceeded = False
        if wanted and not self._escalated:
            now = time.monotonic()
            self._restarts.append(now)
            while self._restarts and now - self._restarts[0] > self._period_s:
                self._restarts.popleft()
            exceeded = len(self._restarts) > self._intensity
        restart = wanted and not self._escalated and not exceeded
        if message.crashed:
            outcome = "restarting it" if restart else "not restarted"
            log.error("%s crashed: %s (%s)", message.name, message.reason, outcome)
            if self._on_crash is not None:
                try:
                    self._on_crash(message.name, message.reason, restart)
                except Exception:
                    log.exception("reporting the crash of %s failed", message.name)
        if restart:
            self._start(spec)
            return
        del self._children[message.name]
        if exceeded:
            self._escalate(
                f"restart intensity exceeded: {len(self._restarts)} restarts within {self._period_s:g} s "
                f"(last: {message.name}: {message.reason or 'stopped'})"
            )

    def _escalate(self, reason: str) -> None:
        self._escalated = True
        log.critical("supervisor gives up: %s; stopping every actor", reason)
        self._stop_children()
        if self._on_escalate is not None:
            self._on_escalate(reason)

    def _stop_children(self) -> None:
        for name in reversed(list(self._children)):
            _, ref = self._children.pop(name)
            self._registry.remove(name, ref.actor_urn)
            try:
                ref.stop(block=True, timeout=_STOP_TIMEOUT_S)
            except pykka.Timeout:
                log.error("%s did not stop within %.0f s", name, _STOP_TIMEOUT_S)
            except pykka.ActorDeadError:
                pass
