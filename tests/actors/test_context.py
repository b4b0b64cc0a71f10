"""ActorContext directly: blocking calls, answers for orphaned calls, publishing, alerts, delivery.

The harness here - an ActorContext wired by hand on a real state log, with a PULL socket
standing in for the Gateway and test actors recording what they are told - also serves
the other direct tests of the actors (``test_release``, ``test_actors_direct``, ``test_calls``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest
import zmq

from actors.context import ActorContext
from actors.names import WORKSPACE_PREFIX
from actors.supervision import ChildActor, ChildExited, ChildSpec, Registry, StartChild, Sync
from runtime.capacity import Admission, Pool
from runtime.errors import Conflict, InternalError, NotFound, ProviderUnavailable, WorkspaceError
from runtime.messages import (
    ActorCrashed,
    AlertCleared,
    AlertRaised,
    Completed,
    DestroyWorkspace,
    ErrorBody,
    ProviderHealthChanged,
    Reply,
    ReplyTo,
    State,
    StoredWorkspace,
    WorkspaceSpec,
    decode_reply,
)
from runtime.monitoring.boards import Boards, Sweeps
from runtime.providers.base import Provider
from runtime.state import ProcessTable, StateLog
from runtime.wire.outbox import ERROR, KIND_REPLY
from tests.conftest import MakeSettings
from tests.runtime.messages.test_messages import record

TIMEOUT_S = 5.0
REPLY_TO = ReplyTo(b"client-7", "req-1")


# ---------------------------------------------------------------------- the harness


class Received:
    """What a Recorder was told, in order; waited on with a deadline."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._messages: list[Any] = []

    def add(self, message: Any) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = TIMEOUT_S) -> list[Any]:
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._messages) >= count, timeout_s)
            assert arrived, f"expected {count} message(s), got {self._messages}"
            return list(self._messages)

    def all(self) -> list[Any]:
        with self._changed:
            return list(self._messages)


class Recorder(pykka.ThreadingActor):
    """A test actor keeping every message it is told; asked ``Sync``, it answers True."""

    def __init__(self, received: Received) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Sync):
            return True
        self.received.add(message)
        return None


@dataclass(frozen=True)
class RecordingContext(ActorContext):
    """An ActorContext that also notes the kind of each blocking call, as the actor starts it."""

    blocking: list[str] = field(default_factory=list)

    def run_blocking(
        self, actor: pykka.ActorRef[Any], kind: str, reply_to: ReplyTo | None, call: Callable[[], object]
    ) -> None:
        self.blocking.append(kind)
        super().run_blocking(actor, kind, reply_to, call)


def _never_started(supervisor: pykka.ActorRef[Any]) -> pykka.ActorRef[Any]:
    raise AssertionError("the test's owner of workspace actors starts none")


class Harness:
    """One hand-wired ActorContext and the test actors around the actors under test.

    ``supervisor`` records the ``ChildExited`` of every actor started with ``start``;
    ``owner`` owns the ``workspace:`` names, so whatever is delivered to a workspace whose
    actor does not run reaches it as ``StartChild(spec, then=message)`` (see ``delivered``).
    """

    def __init__(self, ctx: RecordingContext, pull: zmq.Socket[bytes]) -> None:
        self.ctx = ctx
        self.pull = pull
        self._recorders: list[pykka.ActorRef[Any]] = []
        self._actors: list[pykka.ActorRef[Any]] = []
        self.supervisor, self.exits = self.recorder()
        self.owner, self.owned = self.recorder()
        ctx.registry.own(WORKSPACE_PREFIX, self.owner, lambda name: ChildSpec(name, _never_started, "transient"))

    def recorder(self, name: str | None = None) -> tuple[pykka.ActorRef[Any], Received]:
        """A new Recorder, registered as ``name`` if given."""
        received = Received()
        ref = Recorder.start(received)
        self._recorders.append(ref)
        if name is not None:
            self.ctx.registry.put(name, ref)
        return ref, received

    def start(self, actor: type[ChildActor], *args: Any) -> pykka.ActorRef[Any]:
        """Start ``actor(supervisor, ctx, *args)``; return once what its start told itself is handled."""
        ref = actor.start(self.supervisor, self.ctx, *args)
        self._actors.append(ref)
        ref.ask(Sync(), timeout=TIMEOUT_S)  # on_start has run (it runs before any message)...
        ref.ask(Sync(), timeout=TIMEOUT_S)  # ...and what it told itself then has been handled
        return ref

    def delivered(self) -> list[tuple[str, Any]]:
        """Everything delivered to workspace actors so far, as (registry name, message)."""
        self.owner.ask(Sync(), timeout=TIMEOUT_S)
        starts = self.owned.all()
        assert all(isinstance(start, StartChild) for start in starts), starts
        return [(start.spec.name, start.then) for start in starts]

    def frame(self, timeout_s: float = TIMEOUT_S) -> list[bytes]:
        """The next frames sent to the Gateway's endpoint."""
        assert self.pull.poll(int(timeout_s * 1000)), "nothing reached the Gateway's endpoint"
        return self.pull.recv_multipart()

    def reply(self, reply_to: ReplyTo) -> tuple[bytes, Reply]:
        """The next frame, which must be a reply to ``reply_to``: its outcome and the decoded reply."""
        kind, identity, request_id, outcome, body = self.frame()
        assert (kind, identity, request_id) == (KIND_REPLY, reply_to.identity, reply_to.request_id.encode())
        reply = decode_reply(body)
        assert reply.id == reply_to.request_id
        return outcome, reply

    def nothing_sent(self) -> bool:
        """Whether nothing is waiting at the Gateway's endpoint (check after a Sync of the sender)."""
        return self.pull.poll(0) == 0

    def close(self) -> None:
        for ref in reversed(self._actors):
            ref.stop(block=True, timeout=TIMEOUT_S)
        self.supervisor.ask(Sync(), timeout=TIMEOUT_S)
        crashes = [exit for exit in self.exits.all() if isinstance(exit, ChildExited) and exit.crashed]
        for ref in reversed(self._recorders):
            ref.stop(block=True, timeout=TIMEOUT_S)
        assert crashes == [], f"actors crashed during the test: {crashes}"


MakeHarness = Callable[..., Harness]


@contextlib.contextmanager
def harnesses(tmp_path: Path, make_settings: MakeSettings) -> Iterator[MakeHarness]:
    """Make harnesses; on exit each is closed: actors stopped, then its sockets and state log.

    ``make(providers=..., limit=..., active=..., pools=..., **settings)``: the providers, the
    capacity limit, the workspaces already holding a slot, the pools, and settings changes.
    Health checks and pool ticks are an hour apart: the tests drive the actors by messages.
    """
    counter = itertools.count()
    with contextlib.ExitStack() as stack:

        def make(
            *,
            providers: Mapping[str, Provider] | None = None,
            limit: int = 10,
            active: Iterable[str] = (),
            pools: Mapping[str, Pool] | None = None,
            **changes: Any,
        ) -> Harness:
            statelog = StateLog(tmp_path / f"harness-{next(counter)}")
            stack.callback(statelog.close)
            context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
            stack.callback(context.destroy, linger=0)  # closes the PULL socket too
            endpoint = f"inproc://test-outbox-{secrets.token_hex(4)}"
            pull = context.socket(zmq.PULL)
            pull.bind(endpoint)
            ctx = RecordingContext(
                settings=make_settings(**{"health_interval_s": 3600.0, **changes}),
                statelog=statelog,
                zmq_context=context,
                outbox_endpoint=endpoint,
                registry=Registry(),
                providers=providers or {},
                boards=Boards(admission=Admission(limit, active), pools=pools or {}, sweeps=Sweeps(3600.0)),
                processes=ProcessTable(lambda topic, payload: None),
            )
            harness = Harness(ctx, pull)
            stack.callback(harness.close)
            return harness

        yield make


def stored(
    workspace_id: str,
    state: State = "ready",
    *,
    pooled: bool = False,
    request: str = "",
    handle: str | None = None,
    env: dict[str, str] | None = None,
    **changes: Any,
) -> StoredWorkspace:
    """A state-log entry on ``gvisor``; ``changes`` go to its record, which never expires unless told."""
    spec = WorkspaceSpec(
        workspace_id=workspace_id, image="img", cpu=1.0, memory_bytes=256 << 20, disk_bytes=1 << 30, env=env or {},
        labels={},
    )  # fmt: skip
    return StoredWorkspace(
        record=record(id=workspace_id, state=state, **{"expires_at": None, **changes}),
        spec=spec,
        handle=f"h-{workspace_id}" if handle is None else handle,
        pooled=pooled,
        request=request,
    )


def join_blocking(kind: str) -> None:
    """Wait until every worker thread of ``run_blocking`` calls of ``kind`` has ended."""
    for thread in threading.enumerate():
        if thread.name == f"blocking-{kind}":
            thread.join(TIMEOUT_S)
            assert not thread.is_alive(), f"the {kind} call never ended"


@pytest.fixture
def make_harness(tmp_path: Path, make_settings: MakeSettings) -> Iterator[MakeHarness]:
    with harnesses(tmp_path, make_settings) as make:
        yield make


# ---------------------------------------------------------------------- run_blocking


def test_a_blocking_call_runs_on_its_own_thread_while_the_actor_stays_free(make_harness: MakeHarness) -> None:
    harness = make_harness()
    actor, received = harness.recorder()
    gate = threading.Event()
    ran_on: list[str] = []

    def call() -> object:
        ran_on.append(threading.current_thread().name)
        if not gate.wait(TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        return {"answer": 42}

    harness.ctx.run_blocking(actor, "exec", REPLY_TO, call)
    assert actor.ask(Sync(), timeout=TIMEOUT_S)  # its mailbox is served while the call waits
    assert received.all() == []
    gate.set()
    assert received.wait_for(1) == [Completed("exec", REPLY_TO, {"answer": 42}, None)]
    assert ran_on == ["blocking-exec"]


@pytest.mark.parametrize(
    "error",
    [NotFound("no such file: /workspace/a"), Conflict("busy", retryable=True), ProviderUnavailable("daemon down")],
    ids=["not_found", "conflict", "provider_unavailable"],
)
def test_a_workspace_error_comes_back_as_raised(make_harness: MakeHarness, error: WorkspaceError) -> None:
    harness = make_harness()
    actor, received = harness.recorder()

    def call() -> object:
        raise error

    harness.ctx.run_blocking(actor, "read_file", None, call)
    [done] = received.wait_for(1)
    assert (done.kind, done.reply_to, done.value) == ("read_file", None, None)
    assert done.error is error


def test_any_other_exception_becomes_an_internal_error_naming_the_kind(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness()
    actor, received = harness.recorder()

    def call() -> object:
        raise KeyError("handle")

    harness.ctx.run_blocking(actor, "write_file", REPLY_TO, call)
    [done] = received.wait_for(1)
    assert (done.kind, done.reply_to, done.value) == ("write_file", REPLY_TO, None)
    assert isinstance(done.error, InternalError)
    assert done.error.message == "write_file failed: KeyError('handle')"
    assert not done.error.retryable
    [logged] = [r for r in caplog.records if r.name == "actors.context"]
    assert logged.getMessage() == "write_file call failed unexpectedly"
    assert logged.exc_info is not None and logged.exc_info[0] is KeyError


@pytest.mark.parametrize("fails", [False, True], ids=["returned", "raised"])
def test_when_the_actor_is_gone_the_waiting_client_is_answered_through_a_one_off_outbox(
    make_harness: MakeHarness, fails: bool
) -> None:
    harness = make_harness()
    actor, received = harness.recorder()
    gate = threading.Event()

    def call() -> object:
        gate.wait(TIMEOUT_S)
        if fails:
            raise NotFound("gone too")
        return {}

    harness.ctx.run_blocking(actor, "exec", REPLY_TO, call)
    actor.stop(block=True, timeout=TIMEOUT_S)  # the actor stops while the call runs
    gate.set()
    outcome, reply = harness.reply(REPLY_TO)
    assert outcome == ERROR
    assert not reply.ok
    assert reply.error == ErrorBody(
        "internal",
        "the workspace actor stopped before its exec finished; its outcome is unknown: check the workspace, "
        "then send the request again with a new id",
        False,
    )
    assert received.all() == []


def test_a_call_nobody_waits_for_is_dropped_quietly_when_its_actor_is_gone(make_harness: MakeHarness) -> None:
    harness = make_harness()
    actor, _ = harness.recorder()
    actor.stop(block=True, timeout=TIMEOUT_S)
    harness.ctx.run_blocking(actor, "unawaited", None, lambda: {})
    join_blocking("unawaited")
    assert harness.nothing_sent()


def test_an_orphaned_answer_after_the_runtime_shut_down_is_dropped_without_raising(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = make_harness()
    failures: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    shut: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    shut.term()
    ctx = dataclasses.replace(harness.ctx, zmq_context=shut)
    actor, _ = harness.recorder()
    actor.stop(block=True, timeout=TIMEOUT_S)
    ctx.run_blocking(actor, "after-shutdown", REPLY_TO, lambda: {})
    join_blocking("after-shutdown")
    assert failures == []  # the ZMQError of the shut context was caught: the client just times out


# ---------------------------------------------------------------------- publish, alert, outbox


def _marker(statelog: StateLog) -> Any:
    """Write an event and wait for it: everything submitted before it is committed too."""
    return statelog.submit(ActorCrashed(actor="marker", reason="", restarted=False)).result(TIMEOUT_S)


def test_publish_submits_the_event_to_the_state_log_and_ignores_none(make_harness: MakeHarness) -> None:
    harness = make_harness()
    event = ProviderHealthChanged(provider="gvisor", healthy=False, detail="daemon down", runtime="runsc")
    harness.ctx.publish(None)
    harness.ctx.publish(event)
    marker = _marker(harness.ctx.statelog)
    first, second = harness.ctx.statelog.events()
    assert first == msgspec.structs.replace(event, seq=1, ts=first.ts)
    assert first.ts > 0
    assert second == marker
    assert marker.seq == 2


def test_alerts_are_logged_at_their_level_and_published_and_none_is_ignored(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness()
    caplog.set_level(logging.INFO, logger="actors.context")
    common: dict[str, Any] = {"key": "disk:ws_1", "resource": "disk", "value": 95.0, "limit": 100.0}
    raised = AlertRaised(message="ws_1 uses 95% of its disk", workspace_id="ws_1", **common)
    cleared = AlertCleared(message="ws_1 is back under its threshold", workspace_id="ws_1", **common)
    harness.ctx.alert(raised)
    harness.ctx.alert(None)
    harness.ctx.alert(cleared)
    _marker(harness.ctx.statelog)
    events = list(harness.ctx.statelog.events())
    assert [type(event) for event in events] == [AlertRaised, AlertCleared, ActorCrashed]
    assert events[0] == msgspec.structs.replace(raised, seq=1, ts=events[0].ts)
    assert events[1] == msgspec.structs.replace(cleared, seq=2, ts=events[1].ts)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "actors.context"]
    assert logged == [
        (logging.WARNING, "alert disk:ws_1: ws_1 uses 95% of its disk"),
        (logging.INFO, "alert disk:ws_1 cleared: ws_1 is back under its threshold"),
    ]


# ---------------------------------------------------------------------- deliver


def test_deliver_tells_the_running_actor_registered_under_the_workspace_name(make_harness: MakeHarness) -> None:
    harness = make_harness()
    _, received = harness.recorder("workspace:ws_1")
    message = DestroyWorkspace(None, reason="expired")
    harness.ctx.deliver("ws_1", message)
    assert received.wait_for(1) == [message]
    assert harness.delivered() == []  # nobody was asked to start an actor


def test_deliver_to_a_workspace_whose_actor_is_not_running_has_its_owner_start_one(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness()
    stopped, received = harness.recorder("workspace:ws_2")
    stopped.stop(block=True, timeout=TIMEOUT_S)  # still registered, but dead (e.g. it just crashed)
    first, second = DestroyWorkspace(None, reason="one"), DestroyWorkspace(None, reason="two")
    harness.ctx.deliver("ws_2", first)
    harness.ctx.deliver("ws_3", second)
    assert harness.delivered() == [("workspace:ws_2", first), ("workspace:ws_3", second)]
    assert received.all() == []


def test_deliver_with_no_owner_left_raises_provider_unavailable(make_harness: MakeHarness) -> None:
    harness = make_harness()
    harness.ctx.registry.disown(WORKSPACE_PREFIX, harness.owner)  # the workspaces' supervisor is stopping
    with pytest.raises(ProviderUnavailable) as raised:
        harness.ctx.deliver("ws_4", DestroyWorkspace(None))
    assert raised.value.message == "workspace:ws_4 cannot be started: the runtime is stopping"
    assert raised.value.retryable
    assert harness.delivered() == []
