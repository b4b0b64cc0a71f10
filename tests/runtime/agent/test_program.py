"""The workspace agent as a real process on this host, driven over a socket pair."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.agent import calls as agent_calls
from runtime.agent.channel import AGENT_ARGV, AgentChannel, AgentGone
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.messages import Command, ExecResult, signal_number


class Sink:
    """Collects a spawned process's events."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.exit: tuple[int | None, bool, float, str | None] | None = None
        self.done = threading.Event()

    def output(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))

    def exited(self, exit_code: int | None, timed_out: bool, duration_ms: float, error: str | None) -> None:
        self.exit = (exit_code, timed_out, duration_ms, error)
        self.done.set()

    def data(self, stream: str) -> bytes:
        return b"".join(data for name, data in self.chunks if name == stream)


Agent = tuple[AgentChannel, "subprocess.Popen[bytes]"]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(AGENT_ARGV, stdin=theirs, stdout=theirs, cwd=tmp_path)
    theirs.close()
    channel = AgentChannel(ours, "local")
    channel.wait_ready(10)
    yield channel, process
    channel.close()
    process.wait(10)


def run(channel: AgentChannel, cwd: Path, argv: list[str], **kwargs: object) -> ExecResult:
    options: dict[str, object] = {"output_limit": 1 << 20, **kwargs}
    return agent_calls.run(channel, Command(argv=argv, cwd=str(cwd), **options))  # type: ignore[arg-type]


def spawn(channel: AgentChannel, cwd: Path, key: str, argv: list[str], sink: Sink, **kwargs: object) -> int:
    return agent_calls.spawn(channel, key, Command(argv=argv, cwd=str(cwd), **kwargs), sink)  # type: ignore[arg-type]


def test_a_command_runs_to_its_end_with_separate_output_and_its_exit_code(agent: Agent, tmp_path: Path) -> None:
    channel, _ = agent
    result = run(channel, tmp_path, ["sh", "-c", "cat; echo err >&2; pwd; exit 3"], stdin=b"in ")
    assert (result.exit_code, result.stdout, result.stderr) == (3, f"in {tmp_path}\n".encode(), b"err\n")
    assert result.via == "agent" and not result.timed_out
    assert run(channel, tmp_path, ["no-such-command"]).exit_code == 127
    env = run(channel, tmp_path, ["sh", "-c", "echo $GREETING"], env={"GREETING": "hi"})
    assert env.stdout == b"hi\n"


def test_a_timeout_kills_the_whole_group_and_keeps_the_output_so_far(agent: Agent, tmp_path: Path) -> None:
    channel, _ = agent
    marker = f"agent-test-{tmp_path.name}"
    result = run(channel, tmp_path, ["sh", "-c", f"echo before; sleep 30 {marker} & sleep 30"], timeout_s=0.5)
    assert result.timed_out and result.exit_code == 137 and result.stdout == b"before\n"
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False)
    assert survivors.stdout == b""


def test_output_beyond_the_limit_is_dropped_with_a_marker(agent: Agent, tmp_path: Path) -> None:
    channel, _ = agent
    result = run(channel, tmp_path, ["head", "-c", "5000", "/dev/zero"], output_limit=1000)
    assert result.stdout == b"\0" * 1000 + b"\n[output truncated: 4000 bytes omitted]\n"


def test_a_spawned_process_streams_in_order_and_reads_stdin_until_closed(agent: Agent, tmp_path: Path) -> None:
    channel, _ = agent
    sink = Sink()
    assert spawn(channel, tmp_path, "p1", ["cat"], sink, stdin=b"hello ", stdin_open=True) > 0
    agent_calls.write_stdin(channel, "p1", b"x" * 300_000, False)
    agent_calls.write_stdin(channel, "p1", b" bye", True)
    assert sink.done.wait(10)
    assert sink.exit is not None and sink.exit[0] == 0
    assert sink.data("stdout") == b"hello " + b"x" * 300_000 + b" bye"


def test_a_kill_reaches_the_whole_group_and_unknown_processes_are_refused(agent: Agent, tmp_path: Path) -> None:
    channel, _ = agent
    sink = Sink()
    spawn(channel, tmp_path, "p2", ["sh", "-c", "sleep 30 & sleep 30"], sink)
    agent_calls.kill(channel, "p2", signal_number("TERM"))
    assert sink.done.wait(10)
    assert sink.exit is not None and sink.exit[0] == 143
    with pytest.raises(NotFound):
        agent_calls.kill(channel, "p2", 9)
    with pytest.raises(Conflict):
        spawn(channel, tmp_path, "p3", ["sleep", "30"], Sink())
        spawn(channel, tmp_path, "p3", ["sleep", "30"], Sink())
    agent_calls.kill(channel, "p3", 9)


def test_when_the_channel_closes_the_agent_exits_and_spawned_processes_are_lost(agent: Agent, tmp_path: Path) -> None:
    channel, process = agent
    sink = Sink()
    spawn(channel, tmp_path, "p4", ["sleep", "30"], sink)
    channel.close()
    assert process.wait(10) == 0
    assert sink.done.wait(5) and sink.exit is not None and sink.exit[0] is None
    with pytest.raises(AgentGone) as gone:
        run(channel, tmp_path, ["true"])
    assert not gone.value.sent


def test_signal_names_and_numbers_are_understood() -> None:
    assert signal_number("TERM") == signal_number("SIGTERM") == 15
    assert signal_number("9") == signal_number(9) == 9
    for bad in ("NOPE", 0, "99999"):
        with pytest.raises(BadRequest):
            signal_number(bad)
