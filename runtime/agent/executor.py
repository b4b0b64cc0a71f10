"""Agent first, fallback second: the ``Commands`` of any provider whose workspaces run the agent.

A provider hands ``AgentExecutor`` two things: how to open a channel to a new agent in
a workspace (Docker: a ``docker exec`` with stdin attached; Firecracker: a vsock port)
and, if it has one, a ``Fallback`` that runs commands without the agent (Docker's
``docker exec``). Commands and file transfers go through the workspace's agent when it
is up; while it is (re)starting they take the fallback, or, without one, wait for the
agent. A command the agent acknowledged is never run a second time: if the agent dies
before answering, the caller hears ``Conflict`` (worded by the fallback, which can tell
whether the workspace itself stopped). Streamed processes, their stdin and signals
always need the agent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from runtime.agent import calls, files
from runtime.agent.agents import Agents
from runtime.agent.channel import AgentChannel, AgentGone
from runtime.errors import Conflict, WorkspaceError
from runtime.messages import Command, ExecResult
from runtime.providers.base import ProcessSink

__all__ = ["AgentExecutor", "Fallback"]


class Fallback(Protocol):
    """How a provider runs commands in a workspace whose agent is not there."""

    def run(self, handle: str, command: Command) -> ExecResult:
        """Run ``command`` to its end without the agent."""
        ...

    def lost(self, handle: str, gone: AgentGone) -> WorkspaceError:
        """The error for a command the agent took and never answered (it may have run)."""
        ...

    def cancel(self, handle: str) -> None:
        """End the fallback's commands still running in the workspace."""
        ...


class AgentExecutor:
    """Commands, files and streamed processes through each workspace's agent; thread-safe.

    Args:
        open_channel: Starts an agent in a workspace (by handle) and returns its channel.
        fallback: Runs commands while a workspace has no agent; ``None``: wait for the agent.
        retry_after_s: How long a workspace whose agent failed to start is served without one.
    """

    def __init__(
        self,
        open_channel: Callable[[str], AgentChannel],
        fallback: Fallback | None = None,
        retry_after_s: float = 30.0,
    ) -> None:
        self._agents = Agents(open_channel, retry_after_s)
        self._fallback = fallback

    def start(self, handle: str) -> None:
        """Start the workspace's agent in the background (the workspace has just started)."""
        self._agents.start_soon(handle)

    def ready(self, handle: str, timeout_s: float) -> None:
        """Start the workspace's agent and wait until it answers (a provider without a fallback, at create).

        Raises:
            ProviderUnavailable: It did not start within ``timeout_s``.
        """
        self._agents.ensure(handle, timeout_s)

    def removed(self, handle: str) -> None:
        """The workspace is gone: forget its agent."""
        self._agents.discard(handle)

    def _agent(self, handle: str) -> AgentChannel | None:
        """The live agent; ``None`` when the fallback should serve (it is starting in the background)."""
        return self._agents.get(handle) if self._fallback is not None else self._agents.ensure(handle)

    def _lost(self, handle: str, gone: AgentGone) -> WorkspaceError:
        if self._fallback is not None:
            return self._fallback.lost(handle, gone)
        return Conflict(f"the workspace's agent stopped while the command ran ({gone})")

    def _without_agent(self, handle: str) -> Callable[[Command], ExecResult]:
        fallback = self._fallback
        if fallback is None:  # an agent that vanished before taking the call: try a new one
            return lambda command: calls.run(self._agents.ensure(handle), command)
        return lambda command: fallback.run(handle, command)

    def exec(self, handle: str, command: Command) -> ExecResult:
        """Run ``command`` to its end; on timeout its whole process group is killed."""
        channel = self._agent(handle)
        if channel is not None:
            try:
                return calls.run(channel, command)
            except AgentGone as exc:
                if exc.sent:  # it may have run: never run a command twice
                    raise self._lost(handle, exc) from None
                # The agent was gone before it received the command: run it the other way.
        return self._without_agent(handle)(command)

    def read_file(self, handle: str, path: str) -> bytes:
        """A file's contents, through the agent or else the fallback."""
        channel = self._agent(handle)
        if channel is not None:
            with contextlib.suppress(AgentGone):  # reading again the other way is harmless
                return calls.read_file(channel, path)
        return files.read_by_exec(self._without_agent(handle), path)

    def write_file(self, handle: str, path: str, data: bytes, mode: int | None) -> None:
        """Write a file, through the agent or else the fallback."""
        channel = self._agent(handle)
        if channel is not None:
            try:
                calls.write_file(channel, path, data, mode)
                return
            except AgentGone:
                pass  # writing the same bytes again the other way is harmless
        files.write_by_exec(self._without_agent(handle), path, data, mode)

    def spawn(self, handle: str, key: str, command: Command, sink: ProcessSink) -> int:
        """Start a process whose output streams to ``sink``; return its pid in the workspace."""
        try:
            return calls.spawn(self._agents.ensure(handle), key, command, sink)
        except AgentGone as exc:
            raise Conflict(f"the workspace's agent stopped as the process started ({exc})") from None

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        """Feed (and maybe close) a spawned process's standard input."""
        try:
            calls.write_stdin(self._agent_of(handle, key), key, data, close)
        except AgentGone as exc:
            raise Conflict(f"process {key} is gone with the workspace's agent ({exc})") from None

    def kill(self, handle: str, key: str, signal: int) -> None:
        """Signal a spawned process's whole process group."""
        try:
            calls.kill(self._agent_of(handle, key), key, signal)
        except AgentGone as exc:
            raise Conflict(f"process {key} is gone with the workspace's agent ({exc})") from None

    def _agent_of(self, handle: str, key: str) -> AgentChannel:
        """The live agent that runs process ``key`` (a new agent would not know it)."""
        channel = self._agents.get(handle)
        if channel is None:
            raise Conflict(f"process {key} is gone: the workspace's agent stopped")
        return channel

    def cancel(self, handle: str) -> None:
        """End the workspace's agent (starting no other) and the fallback's commands in it."""
        self._agents.forget(handle)
        if self._fallback is not None:
            self._fallback.cancel(handle)

    def close(self) -> None:
        """Close every agent's channel (the agents exit; the workspaces keep running)."""
        self._agents.close()
