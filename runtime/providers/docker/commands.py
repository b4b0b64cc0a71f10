"""``docker exec``: how the Docker provider starts agents, and runs commands without one.

Every workspace's agent (``runtime.agent.program``) is started with one ``docker exec``
whose attached stdin/stdout is its channel. While a workspace has no agent (starting,
restarting after it died, or never: its image has no ``python3``), ``AgentExecutor``
runs commands and file transfers here instead, each as its own ``docker exec``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import docker
import docker.errors

from runtime.agent import AGENT_ARGV, AgentChannel, AgentGone
from runtime.agent.program import EXCLUSIVE
from runtime.errors import Conflict, NotFound, ProviderUnavailable, WorkspaceError
from runtime.messages import Command, ExecResult
from runtime.providers.docker.connection import API_TIMEOUT_S, DockerConnection
from runtime.providers.docker.events import exit_detail
from runtime.providers.docker.exec_stream import ExecStream, docker_demux, open_unix_exec, pump

__all__ = ["DockerExec"]

_DEADLINE_SLACK_S = 3.0
_AGENT_DEATH_WAIT_S = 5.0  # how long a dead agent's workspace gets to show it stopped


class DockerExec:
    """Commands by ``docker exec`` (the ``Fallback`` of the Docker provider's ``AgentExecutor``).

    Args:
        connection: The provider's connection to the daemon.
    """

    def __init__(self, connection: DockerConnection) -> None:
        self._connection = connection
        self._docker = connection.client
        self._errors = connection.errors
        self._lock = threading.Lock()
        self._streams: dict[str, set[socket.socket]] = {}

    def run(self, handle: str, command: Command) -> ExecResult:
        """Run ``command`` in the container; on timeout its whole process group is killed.

        The timeout is enforced inside the workspace by coreutils ``timeout -s KILL``: one
        SIGKILL to the command's whole process group, which the kernel delivers atomically
        with respect to forks in the group, so nothing it started in its group survives (a
        SIGTERM first would let ``timeout`` exit as soon as the command died, leaving its
        children; a child that makes a session of its own leaves the group, and lives on).
        The runtime stops waiting at the deadline plus some slack whatever the image does.
        """
        argv, timeout_s = command.argv, command.timeout_s
        if timeout_s is not None:
            argv = ["timeout", "-s", "KILL", f"{timeout_s:.3f}", *argv]
        started = time.monotonic()
        with self._errors(f"exec in {handle}"):
            api = self._docker().api
            exec_id = api.exec_create(
                handle, argv, stdout=True, stderr=True, stdin=command.stdin is not None, workdir=command.cwd,
                environment=command.env or None,
            )["Id"]  # fmt: skip
            try:
                stream = self._attach(api, exec_id)
            except NotFound:  # Docker forgets the execs of a container that stopped meanwhile
                self._raise_if_stopped(handle)
                raise
            self._track(handle, stream.sock, add=True)
            try:
                deadline = None if timeout_s is None else started + timeout_s + _DEADLINE_SLACK_S
                stdout, stderr, cut_off = pump(
                    stream, stdin=command.stdin, deadline=deadline, limit=command.output_limit
                )
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

    def lost(self, handle: str, gone: AgentGone) -> WorkspaceError:
        """``Conflict`` for a command whose agent died before answering, saying why."""
        try:
            with self._errors(f"checking {handle}"):
                self._raise_if_stopped(handle, wait_s=_AGENT_DEATH_WAIT_S)
        except ProviderUnavailable as down:  # the daemon went, and the agent's channel with it
            return Conflict(f"the workspace's agent stopped while the command ran ({down.message})")
        except Conflict as stopped:
            return stopped
        return Conflict(f"the workspace's agent stopped while the command ran ({gone})")

    def _raise_if_stopped(self, handle: str, wait_s: float = 0.0) -> None:
        """A command that ended abnormally may have ended with its workspace: say so.

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

    def open_agent(self, handle: str) -> AgentChannel:
        """Start the workspace's agent with one ``docker exec``; its attached stdin/stdout is the channel."""
        with self._errors(f"starting the agent in {handle}"):
            api = self._docker().api
            argv = [*AGENT_ARGV, EXCLUSIVE]  # the workspace's one agent: it ends any stale one
            exec_id = api.exec_create(handle, argv, stdin=True, stdout=True, stderr=True)["Id"]
            stream = self._attach(api, exec_id)
        return AgentChannel(stream.sock, handle, pending=stream.pending, demux=docker_demux(f"agent of {handle}"))

    def cancel(self, handle: str) -> None:
        """Shut down the sockets of every exec attached to ``handle`` (their reads end)."""
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
        socket_path = self._connection.socket_path
        if socket_path is not None:
            return open_unix_exec(socket_path, api.api_version, exec_id, timeout=API_TIMEOUT_S)
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
