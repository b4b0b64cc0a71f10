"""Supervision: start in order, stop in reverse, restart per restart type, escalate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.supervision import ChildActor, ChildSpec, Registry, StartChild, Sync
from actors.supervisor import Supervisor


class Boom(Exception):
    pass


class Recorder:
    """Collects what the test actors did, in order, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[str] = []
        self.changed = threading.Condition(self.lock)

    def add(self, line: str) -> None:
        with self.changed:
            self.log.append(line)
            self.changed.notify_all()

    def wait_for(self, line: str, count: int = 1, timeout: float = 5.0) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: self.log.count(line) >= count, timeout)
        assert ok, f"{line!r} x{count} never happened; log: {self.log}"


class Worker(ChildActor):
    def __init__(self, supervisor: pykka.ActorRef[Any], name: str, recorder: Recorder) -> None:
        super().__init__(supervisor, name)
        self.recorder = recorder

    def started(self) -> None:
        self.recorder.add(f"start {self.name}")

    def stopped(self) -> None:
        self.recorder.add(f"stop {self.name}")

    def handle(self, message: Any) -> Any:
        if message == "crash":
            raise Boom(self.name)
        if message == "quit":
            self.stop()
        else:
            self.recorder.add(f"{self.name} got {message}")


def spec(name: str, recorder: Recorder, restart: str = "permanent") -> ChildSpec:
    return ChildSpec(name, lambda sup: Worker.start(sup, name, recorder), restart)  # type: ignore[arg-type]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def escalations() -> list[str]:
    return []


@pytest.fixture
def tree(recorder: Recorder, escalations: list[str]) -> Iterator[tuple[pykka.ActorRef[Any], Registry]]:
    registry = Registry()
    children = [spec("a", recorder), spec("b", recorder)]
    ref = Supervisor.start(registry, children, intensity=2, period_s=60, on_escalate=escalations.append)
    ref.ask(Sync(), timeout=5)
    yield ref, registry
    if ref.is_alive():
        ref.stop(block=True, timeout=10)


def child(registry: Registry, name: str) -> pykka.ActorRef[Any]:
    ref = registry.get(name)
    assert ref is not None, f"{name} is not registered"
    return ref


def test_children_start_in_order_and_stop_in_reverse(tree: Any, recorder: Recorder) -> None:
    ref, registry = tree
    ref.tell(StartChild(spec("c", recorder, "transient"), then="hello"))
    recorder.wait_for("c got hello")
    ref.stop(block=True, timeout=10)
    starts = [line for line in recorder.log if line.startswith("start")]
    stops = [line for line in recorder.log if line.startswith("stop")]
    assert starts == ["start a", "start b", "start c"]
    assert stops == ["stop c", "stop b", "stop a"]
    assert registry.names() == []


def test_a_crashed_permanent_child_is_restarted_as_a_new_actor_found_by_name(tree: Any, recorder: Recorder) -> None:
    ref, registry = tree
    first = child(registry, "a")
    first.tell("crash")
    recorder.wait_for("start a", count=2)
    ref.ask(Sync(), timeout=5)  # the restart is registered
    second = child(registry, "a")
    assert second.actor_urn != first.actor_urn
    second.tell("ping")
    recorder.wait_for("a got ping")
    assert child(registry, "b").is_alive()


def test_a_transient_child_that_stops_normally_is_not_restarted(tree: Any, recorder: Recorder) -> None:
    ref, registry = tree
    ref.tell(StartChild(spec("t", recorder, "transient")))
    ref.ask(Sync(), timeout=5)
    child(registry, "t").tell("quit")
    recorder.wait_for("stop t")
    ref.ask(Sync(), timeout=5)  # the exit notice has been handled
    assert registry.get("t") is None
    assert recorder.log.count("start t") == 1


def test_a_transient_child_that_crashes_is_restarted(tree: Any, recorder: Recorder) -> None:
    ref, registry = tree
    ref.tell(StartChild(spec("t", recorder, "transient")))
    ref.ask(Sync(), timeout=5)
    child(registry, "t").tell("crash")
    recorder.wait_for("start t", count=2)


def test_start_child_for_a_running_name_only_delivers_the_message(tree: Any, recorder: Recorder) -> None:
    ref, _ = tree
    ref.tell(StartChild(spec("a", recorder), then="one"))
    recorder.wait_for("a got one")
    assert recorder.log.count("start a") == 1


def test_exceeding_the_restart_intensity_stops_everything_and_escalates(
    tree: Any, recorder: Recorder, escalations: list[str]
) -> None:
    ref, registry = tree
    for count in range(1, 4):
        child(registry, "a").tell("crash")
        if count < 3:
            recorder.wait_for("start a", count=count + 1)
            ref.ask(Sync(), timeout=5)
    recorder.wait_for("stop b")
    ref.ask(Sync(), timeout=5)
    assert len(escalations) == 1
    assert "restart intensity exceeded: 3 restarts within 60 s" in escalations[0]
    assert registry.names() == []


def test_a_child_whose_start_fails_is_reported_and_restarted(recorder: Recorder) -> None:
    attempts: list[int] = []

    class Flaky(Worker):
        def started(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise Boom("first start fails")
            super().started()

    registry = Registry()
    ref = Supervisor.start(registry, [ChildSpec("f", lambda sup: Flaky.start(sup, "f", recorder))])
    try:
        recorder.wait_for("start f")
        assert len(attempts) == 2
    finally:
        ref.stop(block=True, timeout=10)
