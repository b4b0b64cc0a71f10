"""Starting, restarting and forgetting agents (real agent processes on this host)."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from runtime.agent.agents import Agents
from runtime.agent.channel import AGENT_ARGV, AgentChannel
from runtime.errors import ProviderUnavailable
from tests.helpers import poll_until


class Launcher:
    """Opens channels to local agent processes; ``broken`` makes the next ones fail."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.broken = False

    def __call__(self, handle: str) -> AgentChannel:
        ours, theirs = socket.socketpair()
        argv = ["false"] if self.broken else AGENT_ARGV  # `false` exits at once, like a missing python3
        process = subprocess.Popen(argv, stdin=theirs, stdout=theirs)
        theirs.close()
        self.processes.append(process)
        return AgentChannel(ours, handle)


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    launched = Launcher()
    yield launched
    for process in launched.processes:
        process.kill()
        process.wait()


def test_get_never_waits_and_starts_the_agent_in_the_background(launcher: Launcher) -> None:
    agents = Agents(launcher)
    assert agents.get("ws") is None
    poll_until(lambda: agents.get("ws") is not None, timeout_s=10)
    channel = agents.get("ws")
    assert channel is not None and channel.agent_pid == launcher.processes[0].pid
    assert len(launcher.processes) == 1  # one start, however often it was asked
    agents.close()


def test_a_dead_agent_is_started_again(launcher: Launcher) -> None:
    agents = Agents(launcher)
    first = agents.ensure("ws")
    launcher.processes[0].kill()
    poll_until(lambda: not first.alive, timeout_s=10)
    assert agents.get("ws") is None  # falls back for this call, restarts meanwhile
    poll_until(lambda: agents.get("ws") is not None, timeout_s=10)
    assert agents.get("ws") is not first and len(launcher.processes) == 2
    agents.close()


def test_an_agent_that_cannot_start_is_left_alone_for_a_while(launcher: Launcher) -> None:
    launcher.broken = True
    agents = Agents(launcher, retry_after_s=3600)
    with pytest.raises(ProviderUnavailable, match="agent is not running"):
        agents.ensure("ws")
    assert agents.get("ws") is None and len(launcher.processes) == 1  # no new attempt
    launcher.broken = False
    assert agents.ensure("ws").alive  # a caller that must have it tries again at once
    agents.close()


def test_closed_agents_are_not_started_again(launcher: Launcher) -> None:
    agents = Agents(launcher)
    channel = agents.ensure("ws")
    agents.forget("ws")
    assert not channel.alive and agents.get("ws") is None
    agents.discard("ws")  # the workspace is gone; a new one may reuse nothing of it
    agents.close()
    assert agents.get("other") is None
    with pytest.raises(ProviderUnavailable, match="stopping"):
        agents.ensure("other")
    assert len(launcher.processes) == 1


def test_an_agent_that_fails_to_start_after_its_workspace_was_forgotten_is_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A workspace destroyed as its agent starts: the start fails, and that is expected.
    caplog.set_level(logging.DEBUG, logger="runtime.agent.agents")
    started = threading.Event()
    release = threading.Event()

    def opening(handle: str) -> AgentChannel:
        started.set()
        release.wait(10)
        ours, theirs = socket.socketpair()
        theirs.close()  # the process never started: its stream ends at once
        return AgentChannel(ours, handle)

    agents = Agents(opening)
    agents.start_soon("ws")
    assert started.wait(10)
    agents.forget("ws")
    release.set()
    poll_until(lambda: any("did not start" in record.getMessage() for record in caplog.records), timeout_s=10)
    assert agents.get("ws") is None
    assert [record.levelname for record in caplog.records if "did not start" in record.getMessage()] == ["DEBUG"]
    agents.close()


def test_an_agent_that_fails_to_start_in_a_live_workspace_is_a_warning(
    launcher: Launcher, caplog: pytest.LogCaptureFixture
) -> None:
    launcher.broken = True
    agents = Agents(launcher, retry_after_s=3600)
    with pytest.raises(ProviderUnavailable):
        agents.ensure("ws")
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("the agent of ws did not start (commands take the slower path meanwhile): ")
    agents.close()
