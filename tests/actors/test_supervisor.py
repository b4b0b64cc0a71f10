"""Supervision: start in order, stop in reverse, restart per restart type, escalate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.supervision import ChildActor, ChildExited, ChildSpec, Registry, StartChild, Sync
from actors.supervisor import DynamicSupervisor, RestartWindow, Supervisor
from runtime.errors import ProviderUnavailable


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


# ---------------------------------------------------------------------- dynamic supervision


class Boss(pykka.ThreadingActor):
    """Stands in for the root: records what its children say when they exit."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self.recorder.add(f"{message.name} exited crashed={message.crashed}")
        return None


class Dynamic:
    """A dynamic supervisor of transient Workers named ``job:<n>``, under a stand-in root."""

    def __init__(self, recorder: Recorder, intensity: int = 2) -> None:
        self.recorder = recorder
        self.registry = Registry()
        self.crashes: list[tuple[str, str, bool]] = []
        self.given_up: list[tuple[str, str]] = []
        self.boss = Boss.start(recorder)
        self.ref = DynamicSupervisor.start(
            self.boss,
            "jobs",
            self.registry,
            prefix="job:",
            spec_for=lambda name: spec(name, recorder, "transient"),
            intensity=intensity,
            period_s=60,
            on_crash=lambda *crash: self.crashes.append(crash),
            on_give_up=lambda name, reason: self.given_up.append((name, reason)),
        )
        self.ref.ask(Sync(), timeout=5)

    def sync(self) -> None:
        self.ref.ask(Sync(), timeout=5)

    def stop(self) -> None:
        if self.ref.is_alive():
            self.ref.stop(block=True, timeout=10)
        self.boss.stop(block=True, timeout=10)


@pytest.fixture
def dynamic(recorder: Recorder) -> Iterator[Dynamic]:
    supervised = Dynamic(recorder)
    yield supervised
    supervised.stop()


def test_deliver_starts_a_child_on_demand_then_tells_the_running_one(dynamic: Dynamic, recorder: Recorder) -> None:
    dynamic.registry.deliver("job:1", "first")
    recorder.wait_for("job:1 got first")
    dynamic.registry.deliver("job:1", "second")
    recorder.wait_for("job:1 got second")
    assert recorder.log.count("start job:1") == 1
    assert dynamic.registry.names("job:") == ["job:1"]


def test_deliver_without_an_owner_for_the_name_says_the_runtime_is_stopping(dynamic: Dynamic) -> None:
    with pytest.raises(ProviderUnavailable, match="other:1 cannot be started: the runtime is stopping"):
        dynamic.registry.deliver("other:1", "hello")
    dynamic.ref.stop(block=True, timeout=10)  # it disowns its prefix as it stops
    with pytest.raises(ProviderUnavailable, match="the runtime is stopping"):
        dynamic.registry.deliver("job:2", "hello")


def test_each_child_is_restarted_on_its_own_intensity_and_given_up_on_alone(
    dynamic: Dynamic, recorder: Recorder
) -> None:
    dynamic.registry.deliver("job:loop", "hello")
    dynamic.registry.deliver("job:calm", "hello")
    recorder.wait_for("job:calm got hello")
    recorder.wait_for("job:loop got hello")
    for count in range(1, 4):  # intensity 2: the third crash within the period is one too many
        ref = dynamic.registry.get("job:loop")
        assert ref is not None
        ref.tell("crash")
        if count < 3:
            recorder.wait_for("start job:loop", count=count + 1)
            dynamic.sync()
    recorder.wait_for("stop job:loop", count=3)
    dynamic.sync()
    assert dynamic.registry.get("job:loop") is None
    [(name, reason)] = dynamic.given_up
    assert name == "job:loop" and "crashed 3 times within 60 s" in reason and "Boom('job:loop')" in reason
    assert [restarted for name, _, restarted in dynamic.crashes] == [True, True, False]
    calm = dynamic.registry.get("job:calm")
    assert calm is not None and calm.is_alive()
    calm.tell("still here")
    recorder.wait_for("job:calm got still here")
    assert not any("jobs exited" in line for line in recorder.log)  # the root never heard of it


def test_a_burst_of_crashes_among_many_children_restarts_each_and_never_escalates(
    dynamic: Dynamic, recorder: Recorder
) -> None:
    names = [f"job:{n}" for n in range(8)]  # 8 crashes: more than any single intensity
    for name in names:
        dynamic.registry.deliver(name, "crash")
    for name in names:
        recorder.wait_for(f"start {name}", count=2)
    dynamic.sync()
    assert dynamic.given_up == []
    assert len(dynamic.crashes) == len(names) and all(restarted for _, _, restarted in dynamic.crashes)
    assert sorted(dynamic.registry.names("job:")) == sorted(names)
    assert dynamic.ref.is_alive()
    assert not any(line.startswith("jobs exited") for line in recorder.log)


def test_a_child_that_stops_normally_is_forgotten_with_its_restart_count(dynamic: Dynamic, recorder: Recorder) -> None:
    dynamic.registry.deliver("job:a", "crash")
    recorder.wait_for("start job:a", count=2)
    dynamic.registry.deliver("job:a", "quit")
    recorder.wait_for("stop job:a", count=2)
    dynamic.sync()
    assert dynamic.registry.get("job:a") is None
    for starts in (4, 5):  # a fresh window: two more crashes are restarted again
        dynamic.registry.deliver("job:a", "crash")  # the first starts it anew, then it crashes
        recorder.wait_for("start job:a", count=starts)
        dynamic.sync()
    assert dynamic.given_up == []


def test_stopping_the_dynamic_supervisor_stops_its_children_last_started_first(
    dynamic: Dynamic, recorder: Recorder
) -> None:
    for name in ("job:x", "job:y"):
        dynamic.registry.deliver(name, "hello")
        recorder.wait_for(f"{name} got hello")
    dynamic.ref.stop(block=True, timeout=10)
    stops = [line for line in recorder.log if line.startswith("stop ")]
    assert stops == ["stop job:y", "stop job:x"]
    assert dynamic.registry.names() == []
    recorder.wait_for("jobs exited crashed=False")


def test_registry_tell_reports_whether_anyone_was_there() -> None:
    registry = Registry()
    assert registry.tell("nobody", "hello") is False
    recorder = Recorder()
    boss = Boss.start(recorder)
    ref = Worker.start(boss, "w", recorder)
    registry.put("w", ref)
    assert registry.tell("w", "hello") is True
    recorder.wait_for("w got hello")
    ref.stop(block=True, timeout=10)
    assert registry.tell("w", "again") is False  # registered, but dead
    assert registry.remove("w", "urn:someone-else") is False
    assert registry.remove("w", ref.actor_urn) is True
    boss.stop(block=True, timeout=10)


def test_the_restart_window_slides() -> None:
    window = RestartWindow(intensity=2, period_s=10)
    assert window.add(now=0.0) is False
    assert window.add(now=5.0) is False
    assert window.add(now=9.0) is True  # three within ten seconds
    assert window.add(now=30.0) is False  # the old ones slid out
    assert len(window) == 1
