"""calls.prepare directly: what each request becomes, and what is refused before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from actors.calls import DESCRIPTIONS, command, prepare
from runtime.errors import BadRequest, CapacityExceeded, Conflict, NotFound
from runtime.messages import (
    OUTPUT_LIMIT,
    CloneResult,
    Command,
    ExecArgs,
    ExecKillArgs,
    ExecResult,
    ExecStdinArgs,
    FileData,
    GitClone,
    GitCloneArgs,
    ProcessCall,
    ProcessInfo,
    ReadFile,
    ReadFileArgs,
    RunExec,
    RunOptions,
    StoredWorkspace,
    WriteFile,
    WriteFileArgs,
)
from runtime.providers.base import ProcessSink
from runtime.state.processes import MAX_RUNNING, ProcessTable
from tests.actors.test_context import REPLY_TO, stored

WS = "ws_0123456789ab"
ENTRY = stored(WS, handle="h-1", env={"A": "create", "B": "create"})


class RecordingCommands:
    """A ``Commands`` noting every call; ``spawn_error`` makes spawn raise, ``files`` is what reads find."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.spawn_error: BaseException | None = None
        self.files: dict[str, bytes] = {}

    def exec(self, handle: str, command: Command) -> ExecResult:
        self.calls.append(("exec", handle, command))
        return ExecResult(exit_code=3, stdout=b"out", stderr=b"err")

    def read_file(self, handle: str, path: str) -> bytes:
        self.calls.append(("read_file", handle, path))
        if path not in self.files:
            raise NotFound(f"no such file: {path}")
        return self.files[path]

    def write_file(self, handle: str, path: str, data: bytes, mode: int | None) -> None:
        self.calls.append(("write_file", handle, path, data, mode))

    def spawn(self, handle: str, key: str, command: Command, sink: ProcessSink) -> int:
        self.calls.append(("spawn", handle, key, command))
        if self.spawn_error is not None:
            raise self.spawn_error
        sink.output("stdout", b"hello")
        return 4242

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        self.calls.append(("write_stdin", handle, key, data, close))

    def kill(self, handle: str, key: str, signal: int) -> None:
        self.calls.append(("kill", handle, key, signal))


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.events.append((topic, msgspec.msgpack.decode(payload)))


class Setup:
    """A workspace's commands and process table, and ``prepare`` on its entry."""

    def __init__(self) -> None:
        self.commands = RecordingCommands()
        self.published = Published()
        self.processes = ProcessTable(self.published)

    def prepare(
        self, message: Any, entry: StoredWorkspace = ENTRY, github: Any = None
    ) -> tuple[str, Callable[[], object]]:
        return prepare(message, entry, self.commands, self.processes, github)

    def started(self, **options: Any) -> ProcessInfo:
        """A streamed process started through prepare (the calls it made are forgotten)."""
        _, spawn = self.prepare(run_exec(["cat"], stream=True, **options))
        info = spawn()
        assert isinstance(info, ProcessInfo)
        self.commands.calls.clear()
        return info


@pytest.fixture
def ws() -> Setup:
    return Setup()


def run_exec(cmd: str | list[str], **options: Any) -> RunExec:
    return RunExec(REPLY_TO, ExecArgs(workspace_id=WS, cmd=cmd, **options))


def process_call(args: ExecStdinArgs | ExecKillArgs) -> ProcessCall:
    return ProcessCall(REPLY_TO, args)


# ---------------------------------------------------------------------- exec


def test_exec_runs_a_command_whose_env_is_the_create_env_under_the_requests(ws: Setup) -> None:
    message = run_exec(
        ["ls", "-l"], env={"B": "request", "C": "request"}, cwd="/workspace/src", timeout_s=5.0, stdin=b"input"
    )
    kind, call = ws.prepare(message)
    assert kind == "exec"
    assert ws.commands.calls == []  # nothing runs until the worker thread calls it
    assert call() == ExecResult(exit_code=3, stdout=b"out", stderr=b"err")
    [(what, handle, run)] = ws.commands.calls
    assert (what, handle) == ("exec", "h-1")
    assert run == Command(
        argv=["ls", "-l"],
        env={"A": "create", "B": "request", "C": "request"},
        cwd="/workspace/src",
        timeout_s=5.0,
        stdin=b"input",
    )
    assert run.output_limit == OUTPUT_LIMIT
    assert ENTRY.spec.env == {"A": "create", "B": "create"}  # the entry is not changed by the merge
    assert ws.processes.list(WS) == []  # a plain exec is no streamed process


def test_a_string_command_runs_through_sh_c_and_every_run_option_is_carried() -> None:
    options = {"cwd": "/tmp", "env": {"X": "1"}, "stdin": b"in", "timeout_s": 1.5, "stdin_open": True}
    assert set(options) == set(RunOptions.__struct_fields__)  # the test covers every option
    run = command(ExecArgs(workspace_id=WS, cmd="echo $A | wc -c", **options), ENTRY)
    assert run.argv == ["sh", "-c", "echo $A | wc -c"]
    assert {name: getattr(run, name) for name in RunOptions.__struct_fields__} == {
        **options,
        "env": {"A": "create", "B": "create", "X": "1"},
    }


# ---------------------------------------------------------------------- streamed processes


def test_a_stream_registers_its_process_before_the_call_and_spawns_it_with_the_tables_sink(ws: Setup) -> None:
    kind, spawn = ws.prepare(run_exec("cat", stream=True, stdin_open=True, env={"B": "r"}))
    assert kind == "spawn"
    [registered] = ws.processes.list(WS)
    assert (registered.cmd, registered.running, registered.stdin_open) == (["sh", "-c", "cat"], True, True)
    assert not registered.pid  # not started yet
    assert ws.commands.calls == []
    info = spawn()
    assert isinstance(info, ProcessInfo)
    assert (info.process_id, info.pid, info.running) == (registered.process_id, 4242, True)
    [(what, handle, key, run)] = ws.commands.calls
    assert (what, handle, key) == ("spawn", "h-1", registered.process_id)
    assert (run.env, run.stdin_open) == ({"A": "create", "B": "r"}, True)
    [(topic, event)] = ws.published.events  # what the provider fed the sink is the table's
    assert topic == f"exec.{WS}.{registered.process_id}"
    assert (event["type"], event["seq"], event["data"]) == ("exec.output", 1, b"hello")
    assert ws.processes.get(WS, registered.process_id).pid == 4242


@pytest.mark.parametrize("error", [NotFound("no workspace h-1"), RuntimeError("agent exploded")])
def test_a_spawn_that_raises_discards_the_process_it_registered(ws: Setup, error: Exception) -> None:
    ws.commands.spawn_error = error
    _, spawn = ws.prepare(run_exec(["make"], stream=True))
    [registered] = ws.processes.list(WS)
    with pytest.raises(type(error)) as raised:
        spawn()
    assert raised.value is error
    assert ws.processes.list(WS) == []
    with pytest.raises(NotFound):
        ws.processes.get(WS, registered.process_id)


def test_a_stream_beyond_the_running_limit_is_refused_before_anything_runs(ws: Setup) -> None:
    for _ in range(MAX_RUNNING):
        ws.processes.register(WS, ["sleep", "60"], stdin_open=False)
    with pytest.raises(CapacityExceeded, match=f"already runs {MAX_RUNNING} streamed processes"):
        ws.prepare(run_exec(["make"], stream=True))
    assert len(ws.processes.list(WS)) == MAX_RUNNING
    assert ws.commands.calls == []
    kind, _ = ws.prepare(run_exec(["make"]))  # a plain exec is not limited
    assert kind == "exec"


# ---------------------------------------------------------------------- calls on a process


@pytest.mark.parametrize(
    "args",
    [
        ExecStdinArgs(workspace_id=WS, process_id="proc_nope", data=b"x"),
        ExecKillArgs(workspace_id=WS, process_id="proc_nope"),
    ],
    ids=["exec_stdin", "exec_kill"],
)
def test_a_process_call_on_an_unknown_process_is_not_found(ws: Setup, args: ExecStdinArgs | ExecKillArgs) -> None:
    with pytest.raises(NotFound, match=f"^process proc_nope does not exist in workspace {WS}$"):
        ws.prepare(process_call(args))
    assert ws.commands.calls == []


@pytest.mark.parametrize(
    ("exit_code", "error", "ended"),
    [(3, None, "exit code 3"), (0, None, "exit code 0"), (None, "the provider closed", "the provider closed")],
)
def test_a_process_call_on_an_ended_process_is_a_conflict_naming_how_it_ended(
    ws: Setup, exit_code: int | None, error: str | None, ended: str
) -> None:
    info, sink = ws.processes.register(WS, ["true"], stdin_open=True)
    sink.exited(exit_code, False, 1.0, error)
    for args in (
        ExecStdinArgs(workspace_id=WS, process_id=info.process_id, data=b"late"),
        ExecKillArgs(workspace_id=WS, process_id=info.process_id, signal="KILL"),
    ):
        with pytest.raises(Conflict) as raised:
            ws.prepare(process_call(args))
        assert raised.value.message == f"process {info.process_id} has ended ({ended})"
    assert ws.commands.calls == []


@pytest.mark.parametrize("signal", ["NOPE", "SIGBOGUS", 0, 65, "-9", ""])
def test_exec_kill_with_a_bad_signal_is_a_bad_request_before_anything_runs(ws: Setup, signal: str | int) -> None:
    info = ws.started(stdin_open=True)
    with pytest.raises(BadRequest, match="signal="):
        ws.prepare(process_call(ExecKillArgs(workspace_id=WS, process_id=info.process_id, signal=signal)))
    assert ws.commands.calls == []
    assert ws.processes.get(WS, info.process_id).running


@pytest.mark.parametrize(("signal", "number"), [("KILL", 9), ("sigint", 2), ("TERM", 15), (15, 15), ("1", 1)])
def test_exec_kill_sends_the_signal_by_number_to_the_process(ws: Setup, signal: str | int, number: int) -> None:
    info = ws.started(stdin_open=True)
    kind, kill = ws.prepare(process_call(ExecKillArgs(workspace_id=WS, process_id=info.process_id, signal=signal)))
    assert (kind, ws.commands.calls) == ("exec_kill", [])
    assert kill() == {}
    assert ws.commands.calls == [("kill", "h-1", info.process_id, number)]


def test_exec_stdin_feeds_the_process_and_may_close_it(ws: Setup) -> None:
    info = ws.started(stdin_open=True)
    args = ExecStdinArgs(workspace_id=WS, process_id=info.process_id, data=b"more", close=True)
    kind, feed = ws.prepare(process_call(args))
    assert (kind, ws.commands.calls) == ("exec_stdin", [])
    assert feed() == {}
    assert ws.commands.calls == [("write_stdin", "h-1", info.process_id, b"more", True)]


# ---------------------------------------------------------------------- files


OUTSIDE = ["/etc/passwd", "../etc/passwd", "/workspace/../etc/passwd", "a/../../b", "", "a\x00b", "/workspace", "."]


@pytest.mark.parametrize("path", OUTSIDE)
def test_write_and_read_paths_outside_the_workspace_are_refused_before_the_call_is_built(ws: Setup, path: str) -> None:
    for message in (
        WriteFile(REPLY_TO, WriteFileArgs(workspace_id=WS, path=path, data=b"x")),
        ReadFile(REPLY_TO, ReadFileArgs(workspace_id=WS, path=path)),
    ):
        with pytest.raises(BadRequest):
            ws.prepare(message)
    assert ws.commands.calls == []


def test_write_file_writes_under_the_workspace_with_its_mode(ws: Setup) -> None:
    message = WriteFile(REPLY_TO, WriteFileArgs(workspace_id=WS, path="src/./run.sh", data=b"#!/bin/sh\n", mode=0o755))
    kind, write = ws.prepare(message)
    assert (kind, ws.commands.calls) == ("write_file", [])
    assert write() == {}
    assert ws.commands.calls == [("write_file", "h-1", "/workspace/src/run.sh", b"#!/bin/sh\n", 0o755)]


def test_read_file_returns_file_data_and_lets_the_providers_refusal_through(ws: Setup) -> None:
    ws.commands.files["/workspace/notes.txt"] = b"remember"
    kind, read = ws.prepare(ReadFile(REPLY_TO, ReadFileArgs(workspace_id=WS, path="notes.txt")))
    assert (kind, ws.commands.calls) == ("read_file", [])
    assert read() == FileData(b"remember")
    assert ws.commands.calls == [("read_file", "h-1", "/workspace/notes.txt")]
    _, missing = ws.prepare(ReadFile(REPLY_TO, ReadFileArgs(workspace_id=WS, path="/workspace/gone")))
    with pytest.raises(NotFound, match="no such file: /workspace/gone"):
        missing()


# ---------------------------------------------------------------------- descriptions


def test_every_kind_prepare_returns_has_a_description(ws: Setup) -> None:
    info = ws.started(stdin_open=True)
    messages: list[Any] = [
        run_exec(["true"]),
        run_exec(["true"], stream=True),
        WriteFile(REPLY_TO, WriteFileArgs(workspace_id=WS, path="a", data=b"")),
        ReadFile(REPLY_TO, ReadFileArgs(workspace_id=WS, path="a")),
        process_call(ExecStdinArgs(workspace_id=WS, process_id=info.process_id)),
        process_call(ExecKillArgs(workspace_id=WS, process_id=info.process_id)),
    ]
    kinds = [ws.prepare(message)[0] for message in messages]
    clone = GitClone(REPLY_TO, GitCloneArgs(workspace_id=WS, repo="octo/hello"))
    kinds.append(ws.prepare(clone, github=object())[0])
    assert kinds == ["exec", "spawn", "write_file", "read_file", "exec_stdin", "exec_kill", "git_clone"]
    assert set(kinds) == set(DESCRIPTIONS)
    assert all(isinstance(text, str) and text for text in DESCRIPTIONS.values())


# ---------------------------------------------------------------------- git clone


class RecordingGitHub:
    def __init__(self) -> None:
        self.clones: list[tuple[Any, str, str, GitCloneArgs]] = []

    def clone(self, commands: Any, handle: str, workspace_id: str, args: GitCloneArgs) -> CloneResult:
        self.clones.append((commands, handle, workspace_id, args))
        return CloneResult(path="/workspace/hello", commit="c0ffee")


def test_a_clone_runs_through_the_github_machinery_with_the_workspaces_commands(ws: Setup) -> None:
    github = RecordingGitHub()
    args = GitCloneArgs(workspace_id=WS, repo="octo/hello", app="bot")
    kind, clone = ws.prepare(GitClone(REPLY_TO, args), github=github)
    assert (kind, github.clones) == ("git_clone", [])
    assert clone() == CloneResult(path="/workspace/hello", commit="c0ffee")
    assert github.clones == [(ws.commands, "h-1", WS, args)]


def test_a_clone_path_outside_the_workspace_or_a_runtime_without_github_is_refused_at_once(ws: Setup) -> None:
    github = RecordingGitHub()
    outside = GitClone(REPLY_TO, GitCloneArgs(workspace_id=WS, repo="octo/hello", path="/etc"))
    with pytest.raises(BadRequest, match="outside /workspace"):
        ws.prepare(outside, github=github)
    with pytest.raises(Conflict, match="no GitHub App support"):
        ws.prepare(GitClone(REPLY_TO, GitCloneArgs(workspace_id=WS, repo="octo/hello")))
    assert github.clones == []
