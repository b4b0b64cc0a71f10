"""Docker's event stream, reduced to what a workspace's owner must know.

``oom`` (a process hit the memory limit; the container may live on), ``die`` (the
container stopped) and ``destroy`` (it was removed), for this runtime's containers only.
The stream blocks; ``close()`` from another thread ends it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors
import requests

from runtime.errors import ProviderUnavailable
from runtime.messages import ContainerEvent
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE

__all__ = ["DockerEventWatch", "exit_detail"]

log = logging.getLogger(__name__)


def exit_detail(client: docker.DockerClient, handle: str) -> str:
    """Why a container stopped, from its state (out of memory, exit code)."""
    try:
        state = client.api.inspect_container(handle).get("State", {})
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return "the workspace's container stopped"
    if state.get("OOMKilled"):
        return f"the workspace ran out of memory: its container was killed (exit {state.get('ExitCode')})"
    error = state.get("Error") or ""
    return f"the workspace's container exited with code {state.get('ExitCode')}" + (f": {error}" if error else "")


class DockerEventWatch:
    """An iterable of ``ContainerEvent`` from the daemon; ends on ``close`` or disconnect.

    Args:
        client: A connected Docker client.
        instance_id: Only containers labelled with this runtime instance are reported.
        describe_exit: Explains why a container stopped, given its name.
    """

    def __init__(self, client: docker.DockerClient, instance_id: str, describe_exit: Callable[[str], str]) -> None:
        self._describe_exit = describe_exit
        self._stream: Any = client.api.events(
            filters={
                "type": "container",
                "label": [f"{LABEL_INSTANCE}={instance_id}"],
                "event": ["oom", "die", "destroy"],
            },
            decode=True,
        )
        self._closed = False

    def close(self) -> None:
        """End the stream (iteration stops)."""
        self._closed = True
        try:
            self._stream.close()
        except Exception:  # closing a half-dead HTTP stream may raise anything; it is closed anyway
            log.debug("closing the Docker event stream", exc_info=True)

    def __iter__(self) -> Iterator[ContainerEvent]:
        try:
            for raw in self._stream:
                event = self._translate(raw)
                if event is not None:
                    yield event
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError, ValueError) as exc:
            if not self._closed:
                raise ProviderUnavailable(f"the Docker event stream broke: {exc}") from exc
        if not self._closed:
            raise ProviderUnavailable("the Docker event stream ended")

    def _translate(self, raw: dict[str, Any]) -> ContainerEvent | None:
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        workspace_id = attributes.get(LABEL_ID)
        action = raw.get("Action") or raw.get("status")
        if not workspace_id:
            return None
        if action == "oom":
            return ContainerEvent(workspace_id, "oom", "a process in the workspace was killed at its memory limit")
        if action == "die":
            return ContainerEvent(workspace_id, "died", self._describe_exit(str(attributes.get("name", ""))))
        if action == "destroy":
            return ContainerEvent(workspace_id, "vanished", "the workspace's container was removed outside the runtime")
        return None
