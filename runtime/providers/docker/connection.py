"""The connection to the Docker daemon, and the one place Docker's errors become ours.

``DockerConnection.errors(what)`` wraps every call to the daemon (as httpx's
``map_exceptions`` does): Docker's and the transport's exceptions leave it as
``WorkspaceError`` families naming what was being done. A broken connection is dropped,
so the next call connects afresh (the daemon may have restarted).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests

from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, Timeout, WorkspaceError

__all__ = ["API_TIMEOUT_S", "DockerConnection"]

API_TIMEOUT_S = 60.0


class DockerConnection:
    """A lazily made, thread-safe Docker client for one daemon.

    Args:
        docker_host: The daemon address (``DOCKER_HOST`` syntax); ``None`` reads the environment.
    """

    def __init__(self, docker_host: str | None = None) -> None:
        self.docker_host = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST")
        self._lock = threading.Lock()
        self._client: docker.DockerClient | None = None

    @property
    def where(self) -> str:
        """The daemon address, for messages."""
        return self.docker_host or "unix:///var/run/docker.sock"

    @property
    def socket_path(self) -> str | None:
        """The daemon's Unix socket, when it is reached through one."""
        if not self.docker_host:
            return "/var/run/docker.sock"
        if self.docker_host.startswith("unix://"):
            return self.docker_host[len("unix://") :]
        return None

    def client(self) -> docker.DockerClient:
        """The client (connecting on first use, or after a broken connection)."""
        with self._lock:
            if self._client is None:
                kwargs: dict[str, Any] = {"version": "auto", "timeout": API_TIMEOUT_S}
                if self.docker_host:
                    kwargs["base_url"] = self.docker_host
                self._client = docker.DockerClient(**kwargs)
            return self._client

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Translate Docker and transport errors raised while doing ``what``."""
        try:
            yield
        except WorkspaceError:
            raise
        except docker.errors.ImageNotFound as exc:
            raise BadRequest(f"{what}: image not found locally ({exc.explanation}); build or load it first") from exc
        except docker.errors.NotFound as exc:
            raise NotFound(f"{what}: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            status = exc.status_code or 0
            if status == 409:
                raise Conflict(f"{what}: {exc.explanation}") from exc
            if status in (400, 422):
                raise BadRequest(f"{what}: {exc.explanation}") from exc
            raise ProviderUnavailable(
                f"{what}: Docker answered {status}: {exc.explanation}", retryable=status >= 500
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise Timeout(f"{what}: Docker did not answer in time ({self.where})") from exc
        except (requests.exceptions.ConnectionError, docker.errors.DockerException, OSError) as exc:
            with self._lock:
                self._client = None
            raise ProviderUnavailable(f"{what}: Docker daemon not reachable at {self.where}: {exc}") from exc
