"""AgentExecutor: real agent processes on this host first, a recording fallback second.

The agents run here, where ``/workspace`` does not exist: commands run in a temporary
directory, and file operations through an agent are refused (outside ``/workspace``) or
missing, which is what they are checked for. File operations through the fallback are
checked by the commands it is asked to run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runtime.agent import files
from runtime.agent.channel import AGENT_ARGV, AgentChannel, AgentGone
from runtime.agent.executor import AgentExecutor
from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, WorkspaceError
from runtime.messages import Command, ExecResult
from runtime.providers.base import ProcessSink
from tests.helpers import poll_until


class ObservedChannel(AgentChannel):
    """An agent channel that says when a ``run`` request is being made on it."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.running = threading.Event()
        super().__init__(sock, name)

    def call(
        self,
        header: dict[str, Any],
        payload: bytes = b"",
        *,
        timeout_s: float | None = None,
        sink: ProcessSink | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        if header.get("op") == "run":
            self.running.set()
        return super().call(header, payload, timeout_s=timeout_s, sink=sink)


class Launcher:
    """Opens channels to local agent processes; while ``gate`` is clear, an opening waits (the agent starts)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.asking = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.channels: list[ObservedChannel] = []
        self._lock = threading.Lock()
        self._over = False

    def __call__(self, handle: str) -> AgentChannel:
        with self._lock:
            self.asked.append(handle)
        self.asking.set()
        self.gate.wait()
        with self._lock:
            if self._over:
                raise OSError("the test is over")
            ours, theirs = socket.socketpair()
            process = subprocess.Popen(AGENT_ARGV, stdin=theirs.fileno(), stdout=theirs.fileno())
            theirs.close()
            self.processes.append(process)
            channel = ObservedChannel(ours, handle)
            self.channels.append(channel)
        return channel

    def close(self) -> None:
        with self._lock:
            self._over = True
        self.gate.set()
        for channel in self.channels:
            channel.close()
        for process in self.processes:
            process.kill()
            process.wait()


class RecordingFallback:
    """A ``Fallback`` that records what it is asked and answers with ``result``."""

    def __init__(self, result: ExecResult | None = None) -> None:
        self.result = result or ExecResult(exit_code=0, stdout=b"from the fallback", stderr=b"", via="fallback")
        self.runs: list[tuple[str, Command]] = []
        self.losses: list[tuple[str, AgentGone]] = []
        self.cancelled: list[str] = []

    def run(self, handle: str, command: Command) -> ExecResult:
        self.runs.append((handle, command))
        return self.result

    def lost(self, handle: str, gone: AgentGone) -> WorkspaceError:
        self.losses.append((handle, gone))
        return Conflict(f"lost in {handle}: {gone}")

    def cancel(self, handle: str) -> None:
        self.cancelled.append(handle)


class Sink:
    """Collects a spawned process's output and end."""

    def __init__(self) -> None:
        self.chunks: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.exit: tuple[int | None, bool, str | None] | None = None
        self.done = threading.Event()

    def output(self, stream: str, data: bytes) -> None:
        self.chunks[stream] += data

    def exited(self, exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None) -> None:
        self.exit = (exit_code, timed_out, error)
        self.done.set()


MakeExecutor = Callable[..., AgentExecutor]


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    launched = Launcher()
    yield launched
    launched.close()


@pytest.fixture
def make_executor(launcher: Launcher) -> Iterator[MakeExecutor]:
    made: list[AgentExecutor] = []

    def make(fallback: RecordingFallback | None = None, retry_after_s: float = 30.0) -> AgentExecutor:
        executor = AgentExecutor(launcher, fallback, retry_after_s)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close()


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Process groups of commands an agent left behind when it was killed; ended after the test."""
    leaders: list[int] = []
    yield leaders
    for leader in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGKILL)


def shell(script: str, cwd: Path, **options: Any) -> Command:
    return Command(argv=["sh", "-c", script], cwd=str(cwd), **options)


def wait_for_agent(executor: AgentExecutor, handle: str, cwd: Path) -> None:
    """Return once ``handle``'s commands run through its agent (each try meanwhile takes the fallback)."""
    probe = Command(argv=["true"], cwd=str(cwd))
    poll_until(lambda: executor.exec(handle, probe).via == "agent", timeout_s=20)


def agent_of(executor: AgentExecutor, handle: str, cwd: Path) -> int:
    """The pid of the agent that runs ``handle``'s commands now (the parent of the shell it starts)."""
    result = executor.exec(handle, shell("echo $PPID", cwd))
    assert result.via == "agent", "the command did not run through an agent"
    return int(result.stdout)


def started(path: Path) -> int:
    """The pid a command wrote to ``path`` as it started."""
    poll_until(lambda: path.exists() and path.read_text().endswith("\n"), timeout_s=20)
    return int(path.read_text())


# ---------------------------------------------------------------------- exec


def test_commands_take_the_fallback_while_the_agent_starts_and_the_agent_once_it_is_up(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    launcher.gate.clear()
    first, second = shell("echo one", tmp_path), shell("echo two", tmp_path)
    assert executor.exec("ws", first) is fallback.result
    assert executor.exec("ws", second) is fallback.result
    assert fallback.runs == [("ws", first), ("ws", second)]
    assert launcher.asking.wait(10)
    launcher.gate.set()
    wait_for_agent(executor, "ws", tmp_path)
    runs = len(fallback.runs)
    result = executor.exec("ws", shell("echo $PPID; pwd; cat; exit 4", tmp_path, stdin=b"in\n"))
    assert result.via == "agent" and result.exit_code == 4
    assert result.stdout == f"{launcher.processes[0].pid}\n{tmp_path}\nin\n".encode()
    assert len(fallback.runs) == runs and fallback.losses == []
    assert launcher.asked == ["ws"] and len(launcher.processes) == 1  # one start, however often asked


def test_a_dead_agent_sends_the_next_command_to_the_fallback_and_is_started_again(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    wait_for_agent(executor, "ws", tmp_path)
    first = launcher.processes[0]
    assert agent_of(executor, "ws", tmp_path) == first.pid
    first.kill()
    first.wait(10)
    poll_until(lambda: not launcher.channels[0].alive, timeout_s=10)
    command = shell("echo after", tmp_path)
    assert executor.exec("ws", command) is fallback.result
    assert fallback.runs[-1] == ("ws", command) and fallback.losses == []
    wait_for_agent(executor, "ws", tmp_path)
    assert len(launcher.processes) == 2
    assert agent_of(executor, "ws", tmp_path) == launcher.processes[1].pid != first.pid


def test_a_command_sent_to_an_agent_that_dies_before_acknowledging_it_runs_through_the_fallback(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    wait_for_agent(executor, "ws", tmp_path)
    agent, channel = launcher.processes[0], launcher.channels[0]
    os.kill(agent.pid, signal.SIGSTOP)  # it cannot read the request, let alone acknowledge it
    channel.running.clear()
    command = shell("echo once", tmp_path)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(executor.exec, "ws", command)
        assert channel.running.wait(10)
        agent.kill()
        result = future.result(20)
    assert result is fallback.result and fallback.runs[-1] == ("ws", command)
    assert fallback.losses == []


def test_an_agent_killed_while_its_command_runs_raises_the_fallbacks_error_and_never_runs_it_again(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path, groups: list[int]
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    wait_for_agent(executor, "ws", tmp_path)
    runs = len(fallback.runs)
    command = shell("echo $$ > started.tmp && mv started.tmp started && exec sleep 30", tmp_path)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(executor.exec, "ws", command)
        groups.append(started(tmp_path / "started"))  # the agent acknowledged it before starting it
        launcher.processes[0].kill()
        error = future.exception(20)
    assert isinstance(error, Conflict) and error.message.startswith("lost in ws: the agent of ws stopped")
    [(handle, gone)] = fallback.losses
    assert handle == "ws" and gone.sent
    assert len(fallback.runs) == runs  # not run a second time


def test_without_a_fallback_a_command_waits_for_the_agent(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    executor = make_executor()
    launcher.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(executor.exec, "ws", shell("echo waited", tmp_path))
        assert launcher.asking.wait(10)
        assert not future.done()  # the agent cannot start before the gate opens
        launcher.gate.set()
        result = future.result(20)
    assert (result.via, result.stdout, result.exit_code) == ("agent", b"waited\n", 0)
    assert len(launcher.processes) == 1


def test_without_a_fallback_a_dead_agent_is_replaced_before_the_command_runs(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    executor = make_executor()
    first = agent_of(executor, "ws", tmp_path)
    launcher.processes[0].kill()
    launcher.processes[0].wait(10)
    # The channel may or may not have noticed yet: either way the command runs on a new agent.
    assert agent_of(executor, "ws", tmp_path) == launcher.processes[1].pid != first
    assert len(launcher.processes) == 2


def test_without_a_fallback_an_agent_killed_while_its_command_runs_is_a_conflict(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path, groups: list[int]
) -> None:
    executor = make_executor()
    command = shell("echo $$ > started.tmp && mv started.tmp started && exec sleep 30", tmp_path)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(executor.exec, "ws", command)
        groups.append(started(tmp_path / "started"))
        launcher.processes[0].kill()
        error = future.exception(20)
    assert isinstance(error, Conflict)
    assert error.message.startswith("the workspace's agent stopped while the command ran (the agent of ws stopped")
    assert len(launcher.processes) == 1  # it was not run again on a new agent


# ---------------------------------------------------------------------- files


def test_files_go_through_the_agent_which_refuses_paths_outside_the_workspace(
    make_executor: MakeExecutor, tmp_path: Path
) -> None:
    executor = make_executor()  # no fallback: only the agent can answer
    secret = tmp_path.resolve() / "secret"
    secret.write_bytes(b"not for the workspace")
    with pytest.raises(BadRequest, match="outside /workspace") as read:
        executor.read_file("ws", str(secret))
    assert read.value.message == files.refusal(str(secret), "outside", str(secret)).message
    target = tmp_path.resolve() / "new"
    with pytest.raises(BadRequest, match="outside /workspace"):
        executor.write_file("ws", str(target), b"data", 0o600)
    assert not target.exists()
    missing = f"/workspace/no-such-file-{tmp_path.name}"
    with pytest.raises(NotFound, match=f"no such file: {missing}"):
        executor.read_file("ws", missing)
    assert not Path("/workspace").exists()


def expected_command(operation: Callable[[files.Run], object]) -> Command:
    """The command ``files`` makes for ``operation`` (given a run that records it)."""
    made: list[Command] = []

    def record(command: Command) -> ExecResult:
        made.append(command)
        return ExecResult(exit_code=0, stdout=b"", stderr=b"")

    operation(record)
    return made[0]


def test_files_take_the_fallbacks_scripts_while_the_agent_starts(
    launcher: Launcher, make_executor: MakeExecutor
) -> None:
    fallback = RecordingFallback(ExecResult(exit_code=0, stdout=b"the contents", stderr=b"", via="fallback"))
    executor = make_executor(fallback)
    launcher.gate.clear()
    assert executor.read_file("ws", "/workspace/a/b") == b"the contents"
    executor.write_file("ws", "/workspace/a/c", b"new\0data", 0o750)
    executor.write_file("ws", "/workspace/a/d", b"", None)
    (_, read), (_, write), (_, plain) = fallback.runs
    assert [handle for handle, _ in fallback.runs] == ["ws"] * 3
    assert read == expected_command(lambda run: files.read_by_exec(run, "/workspace/a/b"))
    assert read.argv[:2] == ["sh", "-c"] and read.argv[3:] == ["sh", "/workspace/a/b"]
    assert read.cwd == "/workspace" and read.output_limit == files.MAX_FILE_BYTES and read.stdin is None
    assert write == expected_command(lambda run: files.write_by_exec(run, "/workspace/a/c", b"new\0data", 0o750))
    assert write.argv[:2] == ["sh", "-c"] and write.argv[3:] == ["sh", "/workspace/a/c", "750"]
    assert write.cwd == "/workspace" and write.stdin == b"new\0data"
    assert plain.argv[3:] == ["sh", "/workspace/a/d", ""] and plain.stdin == b""
    assert launcher.processes == []


@pytest.mark.parametrize(
    ("exit_code", "family", "words"),
    [
        (43, BadRequest, "resolves to '/elsewhere', outside /workspace"),
        (44, NotFound, "no such file: /workspace/f"),
        (45, BadRequest, "/workspace/f is larger than 64 MiB"),
        (46, BadRequest, "/workspace/f is a directory"),
        (1, WorkspaceError, "file operation on /workspace/f failed (exit 1): /elsewhere"),
    ],
)
def test_the_fallbacks_exit_codes_become_file_refusals(
    exit_code: int, family: type[WorkspaceError], words: str, launcher: Launcher, make_executor: MakeExecutor
) -> None:
    fallback = RecordingFallback(ExecResult(exit_code=exit_code, stdout=b"", stderr=b"/elsewhere\n", via="fallback"))
    executor = make_executor(fallback)
    launcher.gate.clear()
    for operation in (
        lambda: executor.read_file("ws", "/workspace/f"),
        lambda: executor.write_file("ws", "/workspace/f", b"x", None),
    ):
        with pytest.raises(WorkspaceError) as raised:
            operation()
        assert type(raised.value) is family and words in raised.value.message
    assert len(fallback.runs) == 2


# ---------------------------------------------------------------------- streamed processes


def test_a_spawned_process_streams_to_its_sink_and_takes_stdin_and_signals(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)  # a spawn waits for the agent even with a fallback
    sink = Sink()
    script = "echo out; echo err >&2; read line; echo got $line; exit 3"
    pid = executor.spawn("ws", "p1", shell(script, tmp_path, stdin_open=True), sink)
    assert pid > 0
    executor.write_stdin("ws", "p1", b"hi\n", True)
    assert sink.done.wait(20)
    assert sink.exit == (3, False, None)
    assert sink.chunks == {"stdout": b"out\ngot hi\n", "stderr": b"err\n"}
    sleeper = Sink()
    executor.spawn("ws", "p2", Command(argv=["sleep", "30"], cwd=str(tmp_path)), sleeper)
    executor.kill("ws", "p2", signal.SIGTERM)
    assert sleeper.done.wait(20) and sleeper.exit == (143, False, None)
    with pytest.raises(NotFound, match="process p2 is not running"):
        executor.kill("ws", "p2", signal.SIGKILL)
    assert fallback.runs == [] and len(launcher.processes) == 1


def test_stdin_and_signals_for_a_process_whose_agent_is_gone_are_conflicts(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path, groups: list[int]
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    sink = Sink()
    groups.append(executor.spawn("ws", "p1", Command(argv=["cat"], cwd=str(tmp_path), stdin_open=True), sink))
    launcher.processes[0].kill()
    assert sink.done.wait(20)
    assert sink.exit is not None and sink.exit[0] is None
    assert sink.exit[2] == "the workspace's agent stopped (ws); the process is lost"
    poll_until(lambda: not launcher.channels[0].alive, timeout_s=10)
    with pytest.raises(Conflict, match="process p1 is gone: the workspace's agent stopped"):
        executor.write_stdin("ws", "p1", b"more", False)
    with pytest.raises(Conflict, match="process p1 is gone: the workspace's agent stopped"):
        executor.kill("ws", "p1", signal.SIGTERM)
    wait_for_agent(executor, "ws", tmp_path)  # a new agent starts meanwhile, which never knew p1
    with pytest.raises(NotFound, match="process p1 is not running"):
        executor.write_stdin("ws", "p1", b"more", False)
    assert len(launcher.processes) == 2


# ---------------------------------------------------------------------- cancel, removed, close


def test_cancel_ends_the_agent_for_good_and_cancels_the_fallbacks_commands(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    wait_for_agent(executor, "ws", tmp_path)
    executor.cancel("ws")
    assert launcher.processes[0].wait(10) == 0  # its channel closed: the agent exits
    assert fallback.cancelled == ["ws"]
    command = shell("echo after", tmp_path)
    assert executor.exec("ws", command) is fallback.result and fallback.runs[-1] == ("ws", command)
    assert launcher.asked == ["ws"]  # no new agent for a cancelled workspace ...
    executor.start("ws")  # ... until it starts again
    wait_for_agent(executor, "ws", tmp_path)
    assert len(launcher.processes) == 2


def test_a_removed_workspaces_agent_exits_without_cancelling_the_fallback(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    executor.start("gone")
    wait_for_agent(executor, "gone", tmp_path)
    executor.removed("gone")
    assert launcher.processes[0].wait(10) == 0
    assert fallback.cancelled == []


def test_close_ends_every_agent_and_starts_no_other(
    launcher: Launcher, make_executor: MakeExecutor, tmp_path: Path
) -> None:
    fallback = RecordingFallback()
    executor = make_executor(fallback)
    wait_for_agent(executor, "a", tmp_path)
    wait_for_agent(executor, "b", tmp_path)
    assert sorted(channel.name for channel in launcher.channels) == ["a", "b"]
    executor.close()
    assert [process.wait(10) for process in launcher.processes] == [0, 0]
    assert executor.exec("a", shell("true", tmp_path)) is fallback.result
    with pytest.raises(ProviderUnavailable, match="the runtime is stopping"):
        executor.spawn("b", "p1", shell("true", tmp_path), Sink())
    assert len(launcher.asked) == 2
