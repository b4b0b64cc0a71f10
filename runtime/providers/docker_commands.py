"""Commands and processes in Docker workspaces: through each one's agent, or ``docker exec``.

Every workspace gets an agent (``runtime.agent``) started with one ``docker exec`` whose
attached stdin/stdout is its channel. Commands, file transfers and streamed processes go
through it; while it is absent (starting, restarting after it died, or impossible because
the image has no ``python3``) commands and file transfers run through ``docker exec``, and
it is started again in the background. A command the agent acknowledged is never run a
second time: if the agent dies before answering, the caller hears ``Conflict``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NoReturn

import docker
import docker.errors

from runtime import files
from runtime.agent import EXCLUSIVE
from runtime.errors import Conflict, ProviderUnavailable
from runtime.messages import ExecResult
from runtime.providers import agent_calls
from runtime.providers.agent_channel import AGENT_ARGV, AgentChannel, AgentGone
from runtime.providers.agents import Agents
from runtime.providers.base import OUTPUT_LIMIT, ProcessSink
from runtime.providers.docker_events import exit_detail
from runtime.providers.docker_exec import ExecStream, docker_demux, open_unix_exec, pump

__all__ = ["DockerCommands"]

_DEADLINE_SLACK_S = 3.0
_AGENT_DEATH_WAIT_S = 5.0  # how long a dead agent's workspace gets to show it stopped

Errors = Callable[[str], AbstractContextManager[None]]


class DockerCommands:
    """The exec side of ``DockerProvider``.

    Args:
        client: Returns the provider's Docker client.
        errors: The provider's translation of Docker errors (a context manager per call).
        socket_path: The daemon's Unix socket, if it is reached through one.
        api_timeout_s: How long Docker gets to answer an attach.
    """

    def __init__(self, client: Callable[[], docker.DockerClient], errors: Errors, socket_path: str | None,
                 api_timeout_s: float) -> None:  # fmt: skip
        self._docker = client
        self._errors = errors
        self._socket_path = socket_path
        self._api_timeout_s = api_timeout_s
        self._lock = threading.Lock()
        self._streams: dict[str, set[socket.socket]] = {}
        self._agents = Agents(self._open_agent)

    def start_agent(self, handle: str) -> None:
        """Start the workspace's agent in the background (its container has just started)."""
        self._agents.start_soon(handle)

    def removed(self, handle: str) -> None:
        """The workspace's container is gone: forget its agent."""
        self._agents.discard(handle)

    def exec(
        self,
        handle: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        timeout_s: float | None,
        output_limit: int = OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run ``argv`` in the container; on timeout the whole process group is killed.

        Through the workspace's agent when it is up (it sends the group one SIGKILL at the
        deadline). Otherwise through ``docker exec``, where the timeout is enforced inside
        the workspace by coreutils ``timeout -s KILL``: one SIGKILL to the command's whole
        process group, which the kernel delivers atomically with respect to forks in the
        group, so nothing it started survives (a SIGTERM first would let ``timeout`` exit
        as soon as the command died, leaving its children). Either way the runtime stops
        waiting at the deadline plus some slack whatever the image does.
        """
        channel = self._agents.get(handle)
        if channel is not None:
            try:
                return agent_calls.run(
                    channel, argv, cwd=cwd, env=env, stdin=stdin, timeout_s=timeout_s, output_limit=output_limit
                )
            except AgentGone as exc:
                if exc.sent:  # it may have run: never run a command twice
                    self._explain_lost_command(handle, exc)
                # The agent was gone before it received the command: run it the slower way.
        return self._exec_by_docker(
            handle, argv, cwd=cwd, env=env, stdin=stdin, timeout_s=timeout_s, output_limit=output_limit
        )

    def _exec_by_docker(
        self,
        handle: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        timeout_s: float | None,
        output_limit: int,
    ) -> ExecResult:
        if timeout_s is not None:
            argv = ["timeout", "-s", "KILL", f"{timeout_s:.3f}", *argv]
        started = time.monotonic()
        with self._errors(f"exec in {handle}"):
            api = self._docker().api
            exec_id = api.exec_create(
                handle, argv, stdout=True, stderr=True, stdin=stdin is not None, workdir=cwd, environment=env or None
            )["Id"]
            stream = self._attach(api, exec_id)
            self._track(handle, stream.sock, add=True)
            try:
                deadline = None if timeout_s is None else started + timeout_s + _DEADLINE_SLACK_S
                stdout, stderr, cut_off = pump(stream, stdin=stdin, deadline=deadline, limit=output_limit)
            finally:
                self._track(handle, stream.sock, add=False)
                stream.sock.close()
            exit_code = self._exit_code(api, exec_id, cut_off)
            if exit_code < 0 or exit_code >= 126:
                self._raise_if_stopped(handle)
        elapsed = time.monotonic() - started
        timed_out = cut_off or (timeout_s is not None and elapsed >= timeout_s and exit_code == 137)
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            duration_ms=elapsed * 1000.0,
            via="docker",
        )

    def read_file(self, handle: str, path: str) -> bytes:
        """A file's contents, through the agent or else through ``docker exec``."""
        channel = self._agents.get(handle)
        if channel is not None:
            with contextlib.suppress(AgentGone):  # the agent died: read it the slower way
                return agent_calls.read_file(channel, path)
        return files.read_by_exec(self._file_exec(handle), path)

    def write_file(self, handle: str, path: str, data: bytes, mode: int | None) -> None:
        """Write a file, through the agent or else through ``docker exec``."""
        channel = self._agents.get(handle)
        if channel is not None:
            try:
                agent_calls.write_file(channel, path, data, mode)
                return
            except AgentGone:
                pass  # the agent died: writing the same bytes again the slower way is harmless
        files.write_by_exec(self._file_exec(handle), path, data, mode)

    def _file_exec(self, handle: str) -> files.Exec:
        def run(argv: list[str], stdin: bytes | None, limit: int) -> ExecResult:
            return self._exec_by_docker(
                handle, argv, cwd=files.WORKSPACE_ROOT, env={}, stdin=stdin, timeout_s=None, output_limit=limit
            )

        return run

    def _explain_lost_command(self, handle: str, gone: AgentGone) -> NoReturn:
        """Raise ``Conflict`` for a command whose agent died before answering, saying why."""
        try:
            with self._errors(f"checking {handle}"):
                self._raise_if_stopped(handle, wait_s=_AGENT_DEATH_WAIT_S)
        except ProviderUnavailable as down:  # the daemon went, and the agent's channel with it
            raise Conflict(f"the workspace's agent stopped while the command ran ({down.message})") from None
        raise Conflict(f"the workspace's agent stopped while the command ran ({gone})")

    def _raise_if_stopped(self, handle: str, wait_s: float = 0.0) -> None:
        """An exec that ended abnormally may have ended with its workspace: say so.

        ``wait_s``: how long to give Docker to notice (a sandbox killed at its memory
        limit closes its connections a moment before Docker marks it stopped).
        """
        client = self._docker()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                running = client.api.inspect_container(handle)["State"].get("Running", False)
            except docker.errors.NotFound:
                raise Conflict("the workspace's container was removed while the command ran") from None
            if not running:
                raise Conflict(f"the command ended with its workspace: {exit_detail(client, handle)}")
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)

    # ------------------------------------------------------------------ processes (through the agent)

    def spawn(
        self,
        handle: str,
        key: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        stdin_open: bool,
        timeout_s: float | None,
        sink: ProcessSink,
    ) -> int:
        """Start a process whose output streams to ``sink``; return its pid in the workspace."""
        channel = self._agents.ensure(handle)
        try:
            return agent_calls.spawn(
                channel, key, argv, cwd=cwd, env=env, stdin=stdin, stdin_open=stdin_open, timeout_s=timeout_s, sink=sink
            )
        except AgentGone as exc:
            raise Conflict(f"the workspace's agent stopped as the process started ({exc})") from None

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        """Feed (and maybe close) a spawned process's standard input."""
        try:
            agent_calls.write_stdin(self._agent_of(handle, key), key, data, close)
        except AgentGone as exc:
            raise Conflict(f"process {key} is gone with the workspace's agent ({exc})") from None

    def kill(self, handle: str, key: str, signal: int) -> None:
        """Signal a spawned process's whole process group."""
        try:
            agent_calls.kill(self._agent_of(handle, key), key, signal)
        except AgentGone as exc:
            raise Conflict(f"process {key} is gone with the workspace's agent ({exc})") from None

    def _agent_of(self, handle: str, key: str) -> AgentChannel:
        """The live agent that runs process ``key`` (a new agent would not know it)."""
        channel = self._agents.get(handle)
        if channel is None:
            raise Conflict(f"process {key} is gone: the workspace's agent stopped")
        return channel

    def close(self) -> None:
        """Close every workspace's agent channel (the agents exit; workspaces keep running)."""
        self._agents.close()

    def _open_agent(self, handle: str) -> AgentChannel:
        with self._errors(f"starting the agent in {handle}"):
            api = self._docker().api
            argv = [*AGENT_ARGV, EXCLUSIVE]  # the workspace's one agent: it ends any stale one
            exec_id = api.exec_create(handle, argv, stdin=True, stdout=True, stderr=True)["Id"]
            stream = self._attach(api, exec_id)
        return AgentChannel(stream.sock, handle, pending=stream.pending, demux=docker_demux(f"agent of {handle}"))

    def cancel_execs(self, handle: str) -> None:
        """Shut down the sockets of every exec attached to ``handle`` (their reads end), and its agent."""
        self._agents.forget(handle)
        with self._lock:
            sockets = list(self._streams.get(handle, ()))
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _track(self, handle: str, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._streams.setdefault(handle, set()).add(sock)
            else:
                live = self._streams.get(handle, set())
                live.discard(sock)
                if not live:
                    self._streams.pop(handle, None)

    def _attach(self, api: docker.APIClient, exec_id: str) -> ExecStream:
        if self._socket_path is not None:
            return open_unix_exec(self._socket_path, api.api_version, exec_id, timeout=self._api_timeout_s)
        raw = api.exec_start(exec_id, socket=True)
        return ExecStream(getattr(raw, "_sock", raw))

    @staticmethod
    def _exit_code(api: docker.APIClient, exec_id: str, cut_off: bool) -> int:
        # Docker records the exit code just after closing the output stream; allow it a moment.
        for _ in range(50):
            try:
                info = api.exec_inspect(exec_id)
            except docker.errors.NotFound:
                return -1  # the container went away with the exec
            if info.get("ExitCode") is not None and not info.get("Running"):
                return int(info["ExitCode"])
            if cut_off:
                return -1
            time.sleep(0.002)
        return -1
