"""Routing, directly: every op has one handler; handlers look up and tell, never judge state."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from actors.context import ActorContext
from actors.names import CREDENTIALS
from actors.routing import ROUTES, Router
from actors.supervision import Registry
from runtime.capacity import Admission
from runtime.config import Settings
from runtime.errors import BadRequest, Conflict, Disabled, NotFound, ProviderUnavailable
from runtime.github import CredentialStore, GitHub, TokenBroker
from runtime.messages import (
    OPS,
    AuditArgs,
    CreateArgs,
    CreateWorkspace,
    DestroyWorkspace,
    ExecArgs,
    ExecKillArgs,
    ExecOutputArgs,
    ExecStdinArgs,
    Extend,
    ExtendArgs,
    GitClone,
    GitCloneArgs,
    GithubAppArgs,
    GithubAppSetArgs,
    GithubCredentialUsed,
    GithubKeyArgs,
    ListArgs,
    ManageGithub,
    McpCallArgs,
    NoArgs,
    ProcessCall,
    ProviderStatus,
    ReadFile,
    ReadFileArgs,
    ReplyTo,
    Request,
    RunExec,
    Snapshot,
    State,
    StoredWorkspace,
    WorkspaceArgs,
    WorkspaceRecord,
    WorkspaceSpec,
    WriteFile,
    WriteFileArgs,
)
from runtime.monitoring.boards import Boards
from runtime.state import ProcessTable, StateLog
from runtime.version import __version__
from runtime.wire.gateway import DEFERRED
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.github_standins import private_key_pem

IDENTITY = b"client-1"


class RecordingRegistry(Registry):
    """A registry whose deliveries and tells are recorded instead of reaching actors."""

    def __init__(self, running: set[str] | None = None) -> None:
        super().__init__()
        self.delivered: list[tuple[str, Any]] = []
        self.told: list[tuple[str, Any]] = []
        self.running = running if running is not None else {"provider:gvisor"}

    def deliver(self, name: str, message: Any) -> None:
        self.delivered.append((name, message))

    def tell(self, name: str, message: Any) -> bool:
        if name not in self.running:
            return False
        self.told.append((name, message))
        return True


def entry(workspace_id: str, state: State = "ready", *, pooled: bool = False, request: str = "") -> StoredWorkspace:
    record = WorkspaceRecord(
        id=workspace_id, state=state, provider="gvisor", runtime="fake", image="img", cpu=1.0, memory_bytes=1 << 28,
        disk_bytes=1 << 30, labels={"team": "a"}, persistent=False, created_at=time.time(), expires_at=None,
        error="it broke" if state == "failed" else None,
    )  # fmt: skip
    spec = WorkspaceSpec(
        workspace_id=workspace_id, image="img", cpu=1.0, memory_bytes=1 << 28, disk_bytes=1 << 30, env={}, labels={}
    )
    return StoredWorkspace(record=record, spec=spec, handle=f"fake-{workspace_id}", pooled=pooled, request=request)


class Routed:
    """A router serving a real state log and boards, with a recording registry."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.statelog = StateLog(state_dir / "state")
        self.registry = RecordingRegistry()
        self.zmq: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.processes = ProcessTable(lambda topic, payload: None)
        self.boards = Boards(admission=Admission(settings.max_concurrent))
        self.ctx = ActorContext(
            settings=settings, statelog=self.statelog, zmq_context=self.zmq, outbox_endpoint="inproc://unused",
            registry=self.registry, providers={"gvisor": FakeProvider()}, boards=self.boards,
            processes=self.processes,
        )  # fmt: skip
        self.router = Router(settings)
        self.router.serve(self.ctx)
        self.ids = iter(range(1, 1_000_000))

    def __call__(self, op: str, args: Any = None) -> Any:
        return self.router(IDENTITY, Request(f"r{next(self.ids)}", op), args if args is not None else NoArgs())

    def store(self, *entries: StoredWorkspace) -> None:
        for stored in entries:
            self.statelog.put_workspace(stored)

    def close(self) -> None:
        self.statelog.close()
        self.zmq.destroy(linger=0)


@pytest.fixture
def routed(make_settings: MakeSettings, tmp_path: Path) -> Iterator[Routed]:
    served = Routed(make_settings(), tmp_path)
    try:
        yield served
    finally:
        served.close()


def test_every_op_of_the_protocol_has_exactly_one_handler() -> None:
    assert set(ROUTES) == set(OPS)


def test_ping_says_ready_once_the_actors_serve(routed: Routed) -> None:
    assert routed("ping") == {"version": __version__, "ready": True}


def test_ping_is_answered_while_disabled_and_while_starting_and_nothing_else_is(make_settings: MakeSettings) -> None:
    for settings, refusal, ready in (
        (make_settings(enabled=False), Disabled, True),  # nothing to wait for: it answers `disabled` at once
        (make_settings(), ProviderUnavailable, False),
    ):
        router = Router(settings)  # never served: the actors are not running yet
        assert router(IDENTITY, Request("1", "ping"), NoArgs()) == {"version": __version__, "ready": ready}
        assert not router.serving
        for op in ("list", "stats", "create"):
            with pytest.raises(refusal) as refused:
                router(IDENTITY, Request("2", op), OPS[op]())  # type: ignore[call-arg]
            if refusal is ProviderUnavailable:
                assert refused.value.retryable and "starting" in refused.value.message
            else:
                assert "ENABLE_AGENT_WORKSPACES=true" in refused.value.message


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("exec", ExecArgs(workspace_id="ws_missing0000", cmd="true")),
        ("exec_stdin", ExecStdinArgs(workspace_id="ws_missing0000", process_id="p")),
        ("exec_kill", ExecKillArgs(workspace_id="ws_missing0000", process_id="p")),
        ("write_file", WriteFileArgs(workspace_id="ws_missing0000", path="a", data=b"")),
        ("read_file", ReadFileArgs(workspace_id="ws_missing0000", path="a")),
        ("destroy", WorkspaceArgs("ws_missing0000")),
        ("extend", ExtendArgs(workspace_id="ws_missing0000", ttl_seconds=5)),
        ("get", WorkspaceArgs("ws_missing0000")),
        ("exec_list", WorkspaceArgs("ws_missing0000")),
        ("exec_output", ExecOutputArgs(workspace_id="ws_missing0000", process_id="p")),
    ],
)
def test_an_unknown_workspace_is_not_found_and_no_actor_is_bothered(routed: Routed, op: str, args: Any) -> None:
    with pytest.raises(NotFound, match="workspace ws_missing0000 does not exist"):
        routed(op, args)
    assert routed.registry.delivered == []


@pytest.mark.parametrize("state", ["creating", "ready", "stopping", "destroyed", "failed"])
def test_workspace_ops_are_told_to_the_workspace_actor_whatever_the_recorded_state(
    routed: Routed, state: State
) -> None:
    # One state check per request: the actor's. The router does not read the state at all.
    routed.store(entry("ws_000000000001", state))
    cases: list[tuple[str, Any, type]] = [
        ("exec", ExecArgs(workspace_id="ws_000000000001", cmd="true"), RunExec),
        ("exec_stdin", ExecStdinArgs(workspace_id="ws_000000000001", process_id="p", data=b"x"), ProcessCall),
        ("exec_kill", ExecKillArgs(workspace_id="ws_000000000001", process_id="p"), ProcessCall),
        ("write_file", WriteFileArgs(workspace_id="ws_000000000001", path="a", data=b"1"), WriteFile),
        ("read_file", ReadFileArgs(workspace_id="ws_000000000001", path="a"), ReadFile),
        ("extend", ExtendArgs(workspace_id="ws_000000000001", ttl_seconds=5), Extend),
        ("destroy", WorkspaceArgs("ws_000000000001"), DestroyWorkspace),
    ]
    for op, args, kind in cases:
        assert routed(op, args) is DEFERRED
        name, message = routed.registry.delivered[-1]
        assert name == "workspace:ws_000000000001"
        assert isinstance(message, kind)
        assert message.reply_to.identity == IDENTITY and message.reply_to.request_id.startswith("r")
        if hasattr(message, "args"):
            assert message.args is args
    assert len(routed.registry.delivered) == len(cases)


def test_get_list_and_snapshot_are_answered_from_the_log_with_the_latest_disk_use(routed: Routed) -> None:
    routed.store(
        entry("ws_000000000001"),
        entry("ws_000000000002", "destroyed"),
        entry("ws_000000000003", "failed"),
        entry("ws_000000000004", pooled=True),
    )
    routed.boards.usage.update("ws_000000000001", disk_used_bytes=1234, disk_bytes=1 << 30)
    got = routed("get", WorkspaceArgs("ws_000000000001"))
    assert isinstance(got, WorkspaceRecord) and got.disk_used_bytes == 1234
    listed = routed("list", ListArgs())
    assert [record.id for record in listed] == ["ws_000000000001", "ws_000000000003"]  # no destroyed, no pool
    assert [r.id for r in routed("list", ListArgs(state="destroyed"))] == ["ws_000000000002"]
    assert routed("list", ListArgs(labels={"team": "b"})) == []
    assert len(routed("list", ListArgs(labels={"team": "a"}))) == 2
    snapshot = routed("snapshot")
    assert isinstance(snapshot, Snapshot) and snapshot.seq == routed.statelog.last_seq
    assert [record.id for record in snapshot.workspaces] == ["ws_000000000001", "ws_000000000003"]
    assert routed.registry.delivered == []


def test_providers_report_their_board_status_with_active_workspaces_counted(routed: Routed) -> None:
    routed.store(entry("ws_000000000001"), entry("ws_000000000002", "creating"), entry("ws_000000000003", "failed"))
    routed.boards.providers.update(
        ProviderStatus(name="gvisor", healthy=True, checked_at=1.0, detail="", runtime="fake")
    )
    [status] = routed("providers")
    assert (status.name, status.healthy, status.workspaces) == ("gvisor", True, 2)


def test_stats_are_read_from_the_boards(routed: Routed) -> None:
    routed.store(entry("ws_000000000001"))
    stats = routed("stats")
    assert stats["workspaces"] == 1 and stats["capacity"]["limit"] == routed.ctx.settings.max_concurrent


def test_a_create_is_told_to_its_provider_actor_which_decides_the_rest(routed: Routed) -> None:
    args = CreateArgs(memory="1G")
    assert routed("create", args) is DEFERRED
    [(name, message)] = routed.registry.told
    assert name == "provider:gvisor"
    assert isinstance(message, CreateWorkspace) and message.args is args and message.fallback_from is None
    assert message.reply_to.key == f"{IDENTITY.hex()}:{message.reply_to.request_id}"


def test_a_create_for_an_unknown_or_absent_provider_is_refused_clearly(routed: Routed) -> None:
    with pytest.raises(BadRequest, match="provider='vmware' is unknown: expected one of gvisor, firecracker, e2b"):
        routed("create", CreateArgs(provider="vmware"))
    with pytest.raises(ProviderUnavailable, match="firecracker is not running in this runtime") as absent:
        routed("create", CreateArgs(provider="FireCracker"))
    assert absent.value.retryable is False
    routed.registry.running.clear()  # the gvisor actor is between two incarnations
    with pytest.raises(ProviderUnavailable, match="provider gvisor is restarting") as restarting:
        routed("create", CreateArgs())
    assert restarting.value.retryable is True


def test_a_retried_create_is_answered_from_the_workspace_it_made(routed: Routed) -> None:
    request = Request("task-7", "create")
    key = f"{IDENTITY.hex()}:task-7"
    routed.store(entry("ws_000000000001", request=key))
    made = routed.router(IDENTITY, request, CreateArgs())
    assert isinstance(made, WorkspaceRecord) and made.id == "ws_000000000001"
    assert routed.registry.told == []
    routed.store(entry("ws_000000000001", "failed", request=key))
    with pytest.raises(Conflict, match="made by this request, failed: it broke"):
        routed.router(IDENTITY, request, CreateArgs())
    routed.store(entry("ws_000000000001", "destroyed", request=key))
    with pytest.raises(Conflict, match="made by this request, is destroyed"):
        routed.router(IDENTITY, request, CreateArgs())
    anonymous = routed.router(IDENTITY, Request("", "create"), CreateArgs())  # an empty id is never matched
    assert anonymous is DEFERRED


def test_a_journaled_request_an_earlier_run_began_is_refused_and_no_actor_is_bothered(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    workspace = "ws_000000000001"
    journaled: list[tuple[str, Any]] = [
        ("exec", ExecArgs(workspace_id=workspace, cmd="echo x >> f")),
        ("exec", ExecArgs(workspace_id=workspace, cmd="tail -f log", stream=True)),
        ("exec_stdin", ExecStdinArgs(workspace_id=workspace, process_id="p", data=b"x")),
        ("git_clone", GitCloneArgs(workspace_id=workspace, repo="octo/repo")),
        ("mcp_call", McpCallArgs(name="files", message={"jsonrpc": "2.0", "id": 1, "method": "tools/call"})),
    ]
    idempotent: list[tuple[str, Any]] = [
        ("write_file", WriteFileArgs(workspace_id=workspace, path="a", data=b"1")),
        ("exec_kill", ExecKillArgs(workspace_id=workspace, process_id="p")),
        ("extend", ExtendArgs(workspace_id=workspace, ttl_seconds=5)),
        ("destroy", WorkspaceArgs(workspace)),
    ]
    earlier = StateLog(tmp_path / "state")  # the run that crashed after beginning each of them
    cases = list(enumerate(journaled + idempotent))
    for n, (op, _) in cases:
        earlier.journal.begin(ReplyTo(IDENTITY, f"req-{n}").key, op)
    earlier.journal.wait(ReplyTo(IDENTITY, f"req-{len(cases) - 1}").key)
    earlier.close()

    routed = Routed(make_settings(), tmp_path)
    try:
        routed.store(entry(workspace))
        for n, (op, args) in cases[: len(journaled)]:
            with pytest.raises(Conflict, match=f"request req-{n} \\({op}\\) was in flight when the runtime") as refused:
                routed.router(IDENTITY, Request(f"req-{n}", op), args)
            assert not refused.value.retryable and "it is not run again" in refused.value.message
        assert routed.registry.delivered == []
        for n, (op, args) in cases[len(journaled) :]:  # running these again changes nothing: not journaled
            assert routed.router(IDENTITY, Request(f"req-{n}", op), args) is DEFERRED
        assert [type(message) for _, message in routed.registry.delivered] == [
            WriteFile,
            ProcessCall,
            Extend,
            DestroyWorkspace,
        ]
        # Another client's request with the same id, a new id, and an empty id all run; the first two are journaled.
        exec_args = journaled[0][1]
        assert routed.router(b"client-2", Request("req-0", "exec"), exec_args) is DEFERRED
        assert routed.router(IDENTITY, Request("req-new", "exec"), exec_args) is DEFERRED
        assert routed.router(IDENTITY, Request("", "exec"), exec_args) is DEFERRED
        for key in (ReplyTo(b"client-2", "req-0").key, ReplyTo(IDENTITY, "req-new").key):
            routed.statelog.journal.wait(key)
            begun = routed.statelog.journal.get(key)
            assert begun is not None and (begun.op, begun.boot) == ("exec", routed.statelog.boot_id)
        assert routed.statelog.journal.previous_run(ReplyTo(IDENTITY, "req-new").key) is None  # this run's own
        # The same request again in this run (a retry after a retryable refusal) is handed on.
        assert routed.router(IDENTITY, Request("req-new", "exec"), exec_args) is DEFERRED
    finally:
        routed.close()


def test_streamed_processes_are_listed_and_replayed_from_the_process_table(routed: Routed) -> None:
    routed.store(entry("ws_000000000001"))
    info, sink = routed.processes.register("ws_000000000001", ["make"], stdin_open=False)
    routed.processes.started(info, 7)
    sink.output("stdout", b"built")
    [listed] = routed("exec_list", WorkspaceArgs("ws_000000000001"))
    assert (listed.process_id, listed.pid, listed.stdout_bytes) == (info.process_id, 7, 5)
    page = routed("exec_output", ExecOutputArgs(workspace_id="ws_000000000001", process_id=info.process_id))
    assert [chunk.data for chunk in page.chunks] == [b"built"]
    with pytest.raises(NotFound, match="process nope does not exist"):
        routed("exec_output", ExecOutputArgs(workspace_id="ws_000000000001", process_id="nope"))


def test_the_router_answers_each_request_with_a_value_the_wire_can_encode(routed: Routed) -> None:
    routed.store(entry("ws_000000000001"))
    for op, args in (
        ("ping", NoArgs()),
        ("providers", NoArgs()),
        ("get", WorkspaceArgs("ws_000000000001")),
        ("list", ListArgs()),
        ("stats", NoArgs()),
        ("snapshot", NoArgs()),
        ("exec_list", WorkspaceArgs("ws_000000000001")),
    ):
        msgspec.msgpack.encode(routed(op, args))


# ---------------------------------------------------------------------- GitHub Apps


def test_github_ops_are_refused_at_once_in_a_runtime_without_github_support(routed: Routed) -> None:
    for op, args in (
        ("github_app_list", NoArgs()),
        ("github_app_delete", GithubAppArgs("bot")),
        ("github_key_rotate", GithubKeyArgs("00" * 32)),
    ):
        with pytest.raises(Conflict, match="no GitHub App support"):
            routed(op, args)
    assert routed.registry.told == []


def test_github_writes_go_to_the_credentials_actor_and_reads_are_answered_here(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    served = Routed(make_settings(), tmp_path)
    try:
        store = CredentialStore(served.statelog, bytes(32))
        github = GitHub(TokenBroker("http://127.0.0.1:9", store), lambda used: None)
        ctx = dataclasses.replace(served.ctx, credentials=store, github=github)
        served.router.serve(ctx)
        served.registry.running.add(CREDENTIALS)
        args = GithubAppSetArgs(name="bot", app_id=1, installation_id=2, private_key=private_key_pem().decode())
        assert served("github_app_set", args) is DEFERRED
        assert served("github_app_delete", GithubAppArgs("bot")) is DEFERRED
        assert [(name, type(message.args)) for name, message in served.registry.told] == [
            (CREDENTIALS, GithubAppSetArgs), (CREDENTIALS, GithubAppArgs),
        ]  # fmt: skip
        assert all(isinstance(message, ManageGithub) for _, message in served.registry.told)
        store.set(args)
        assert [app.name for app in served("github_app_list")] == ["bot"]
        used = GithubCredentialUsed(app="bot", workspace_id="ws_1", repo="https://x/y.git", outcome="ok")
        served.statelog.submit(used, audit=True).result(10)
        served.statelog.submit(GithubCredentialUsed(app="bot", workspace_id="ws_1", repo="r", outcome="ok")).result(10)
        [audited] = served("github_audit", AuditArgs())
        assert (audited.app, audited.repo) == ("bot", "https://x/y.git")  # only what was audited
        assert served("github_audit", AuditArgs(after=audited.seq)) == []
        served.store(entry("ws_000000000001", "ready"))
        clone = GitCloneArgs(workspace_id="ws_000000000001", repo="octo/hello")
        assert served("git_clone", clone) is DEFERRED
        name, message = served.registry.delivered[-1]
        assert name == "workspace:ws_000000000001" and isinstance(message, GitClone) and message.args is clone
        served.registry.running.discard(CREDENTIALS)
        with pytest.raises(ProviderUnavailable, match="credentials actor is restarting"):
            served("github_app_delete", GithubAppArgs("bot"))
    finally:
        served.close()
