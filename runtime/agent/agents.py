"""Every workspace's agent channel: started in the background, restarted when it dies.

A provider gives ``Agents`` a way to open a channel to a new agent in a workspace (for
Docker: one ``docker exec`` of ``AGENT_ARGV`` with stdin attached). ``get`` never waits:
it returns the live channel, or ``None`` while the agent is (re)starting - the caller
then uses its slower path (for Docker, ``docker exec``) for this one call. A workspace whose agent
cannot start (no ``python3`` in its image) is tried again after ``retry_after_s``.
``ensure`` waits for the agent, for calls that have no slower path (spawned processes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from runtime.agent.channel import AgentChannel, AgentGone
from runtime.errors import ProviderUnavailable, WorkspaceError

__all__ = ["Agents"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0

Open = Callable[[str], AgentChannel]


class Agents:
    """The agents of one provider's workspaces, by handle; thread-safe.

    Args:
        open_channel: Starts an agent in a workspace and returns its (not yet ready) channel.
        retry_after_s: How long a workspace whose agent failed to start is served without one.
    """

    def __init__(self, open_channel: Open, retry_after_s: float = 30.0) -> None:
        self._open = open_channel
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._channels: dict[str, AgentChannel] = {}
        self._starting: dict[str, threading.Event] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._closed: set[str] = set()
        self._shut = False  # the provider is shutting down: start no agent

    def get(self, handle: str) -> AgentChannel | None:
        """The workspace's live agent; ``None`` (and a start in the background) if there is none."""
        with self._lock:
            channel = self._channels.get(handle)
            if channel is not None and channel.alive:
                return channel
            if self._shut or handle in self._starting or handle in self._closed or self._backing_off(handle):
                return None
            done = self._starting[handle] = threading.Event()
        threading.Thread(target=self._start, args=(handle, done), name=f"agent-start-{handle}", daemon=True).start()
        return None

    def ensure(self, handle: str, timeout_s: float = _START_TIMEOUT_S) -> AgentChannel:
        """The workspace's live agent, waiting for it to start if needed.

        Raises:
            ProviderUnavailable: It could not be started (retryable: a later start may work).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                channel = self._channels.get(handle)
                if channel is not None and channel.alive:
                    return channel
                if self._shut:
                    raise ProviderUnavailable("the runtime is stopping", retryable=True)
                self._failed.pop(handle, None)  # a caller that must have it tries now
                self._closed.discard(handle)
                done = self._starting.get(handle)
                if done is None:
                    done = self._starting[handle] = threading.Event()
                    mine = True
                else:
                    mine = False
            if mine:
                self._start(handle, done)
            else:
                done.wait(max(0.0, deadline - time.monotonic()))
            with self._lock:
                channel = self._channels.get(handle)
                failure = self._failed.get(handle)
            if channel is not None and channel.alive:
                return channel
            if failure is not None or time.monotonic() >= deadline:
                reason = failure[1] if failure else "it did not start in time"
                raise ProviderUnavailable(f"the workspace's agent is not running: {reason}", retryable=True)

    def start_soon(self, handle: str) -> None:
        """Start the workspace's agent in the background (e.g. once its container is up)."""
        with self._lock:
            self._closed.discard(handle)
        self.get(handle)

    def forget(self, handle: str) -> None:
        """Close the workspace's agent and start no other (it is being destroyed, or died)."""
        with self._lock:
            channel = self._channels.pop(handle, None)
            self._failed.pop(handle, None)
            self._closed.add(handle)
        if channel is not None:
            channel.close()

    def discard(self, handle: str) -> None:
        """Forget everything about a workspace that no longer exists."""
        self.forget(handle)
        with self._lock:
            self._closed.discard(handle)

    def close(self) -> None:
        """Close every agent (the provider is shutting down)."""
        with self._lock:
            self._shut = True
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.close()

    def _backing_off(self, handle: str) -> bool:
        failure = self._failed.get(handle)
        return failure is not None and time.monotonic() - failure[0] < self._retry_after_s

    def _start(self, handle: str, done: threading.Event) -> None:
        channel: AgentChannel | None = None
        try:
            channel = self._open(handle)
            channel.wait_ready(_START_TIMEOUT_S)
        except (WorkspaceError, AgentGone, OSError) as exc:
            if channel is not None:
                channel.close()
            with self._lock:
                self._failed[handle] = (time.monotonic(), str(exc))
                del self._starting[handle]
                forgotten = self._shut or handle in self._closed  # e.g. destroyed as it started: expected
            log.log(
                logging.DEBUG if forgotten else logging.WARNING,
                "the agent of %s did not start (commands take the slower path meanwhile): %s",
                handle,
                exc,
            )
            done.set()
            return
        with self._lock:
            del self._starting[handle]
            if self._shut or handle in self._closed:  # forgotten (or shut down) while it started
                keep = False
            else:
                keep = True
                self._channels[handle] = channel
                self._failed.pop(handle, None)
        if not keep:
            channel.close()
        else:
            log.debug("agent of %s is up (pid %d in the workspace)", handle, channel.agent_pid)
        done.set()
