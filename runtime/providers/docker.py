"""The ``gvisor`` provider: Docker containers under runsc (gVisor), or runc as fallback.

Each workspace is one container named ``aw-<workspace id>``, labelled so the runtime can
find its own (``agent-workspaces.managed``, ``.id``, ``.instance``), limited in CPU,
memory (no swap) and pids, on the isolated workspace network. Docker's exceptions are
translated into ``WorkspaceError`` families here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests

from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, Timeout, WorkspaceError
from runtime.messages import ExecResult, WorkspaceSpec
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED, Probe
from runtime.providers.docker_exec import ExecStream, open_unix_exec, pump

__all__ = ["MANAGED_NETWORK", "PIDS_LIMIT", "DockerProvider"]

log = logging.getLogger(__name__)

MANAGED_NETWORK = "workspace_net"
PIDS_LIMIT = 4096
_ICC_OPTION = "com.docker.network.bridge.enable_icc"
_KILL_GRACE_S = 2.0
_API_TIMEOUT_S = 60.0


def _unix_socket_path(docker_host: str | None) -> str | None:
    if not docker_host:
        return "/var/run/docker.sock"
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://") :]
    return None


class DockerProvider:
    """A blocking, thread-safe adapter to the Docker daemon.

    Args:
        instance_id: This runtime's id, put on every container it creates.
        default_image: The image whose presence the health check verifies.
        network_name: The network workspaces join; empty means the managed ``workspace_net``.
        docker_host: The daemon address (``DOCKER_HOST`` syntax); ``None`` reads the environment.
        name: The provider's name in records and the ``providers`` op.
    """

    def __init__(
        self,
        *,
        instance_id: str,
        default_image: str,
        network_name: str = "",
        docker_host: str | None = None,
        name: str = "gvisor",
    ) -> None:
        self.name = name
        self._instance_id = instance_id
        self._default_image = default_image
        self._network = network_name or MANAGED_NETWORK
        self._docker_host = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST")
        self._socket_path = _unix_socket_path(self._docker_host)
        self._lock = threading.Lock()
        self._client: docker.DockerClient | None = None
        self._runtime = "runsc"
        self._network_ready = False
        self._warned_runc = False

    # ------------------------------------------------------------------ plumbing

    @property
    def where(self) -> str:
        """The daemon address, for messages."""
        return self._docker_host or "unix:///var/run/docker.sock"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
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

    def _docker(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                kwargs: dict[str, Any] = {"version": "auto", "timeout": _API_TIMEOUT_S}
                if self._docker_host:
                    kwargs["base_url"] = self._docker_host
                self._client = docker.DockerClient(**kwargs)
            return self._client

    # ------------------------------------------------------------------ health

    def probe(self) -> Probe:
        """Check the daemon, the runtime (runsc or the runc fallback) and the default image."""
        try:
            with self._errors("health check"):
                client = self._docker()
                runtimes: dict[str, Any] = client.info().get("Runtimes", {}) or {}
                runtime = "runsc" if "runsc" in runtimes else "runc"
                self._runtime = runtime
                notes = []
                if runtime == "runc":
                    notes.append("runsc is not registered with Docker: workspaces run on runc (no gVisor sandbox)")
                    if not self._warned_runc:
                        log.warning("Docker has no runsc runtime; workspaces fall back to runc (weaker isolation)")
                        self._warned_runc = True
                elif "--network=host" in (runtimes["runsc"].get("runtimeArgs") or []):
                    notes.append(
                        "runsc uses --network=host inside each container's namespace (gVisor's netstack is off)"
                    )
                try:
                    client.images.get(self._default_image)
                except docker.errors.ImageNotFound:
                    return Probe(
                        False, runtime, f"default image {self._default_image} is missing: run `make setup` to build it"
                    )
                return Probe(True, runtime, "; ".join(notes))
        except WorkspaceError as exc:
            return Probe(False, self._runtime, exc.message)

    # ------------------------------------------------------------------ lifecycle

    def _ensure_network(self, client: docker.DockerClient) -> None:
        if self._network_ready:
            return
        try:
            network = client.networks.get(self._network)
        except docker.errors.NotFound:
            if self._network != MANAGED_NETWORK:
                raise BadRequest(f"WORKSPACE_NETWORK_NAME={self._network!r}: no such Docker network") from None
            try:
                network = client.networks.create(
                    MANAGED_NETWORK,
                    driver="bridge",
                    options={_ICC_OPTION: "false"},
                    labels={LABEL_MANAGED: "true"},
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                network = client.networks.get(MANAGED_NETWORK)
        options = network.attrs.get("Options") or {}
        if options.get(_ICC_OPTION) != "false":
            log.warning(
                "network %s allows inter-container traffic (%s is not false): workspaces can reach each other",
                self._network,
                _ICC_OPTION,
            )
        self._network_ready = True

    def create(self, spec: WorkspaceSpec) -> str:
        """Create and start the workspace's container; return its name."""
        handle = f"aw-{spec.workspace_id}"
        with self._errors(f"creating {spec.workspace_id}"):
            client = self._docker()
            self._ensure_network(client)
            try:
                container = client.containers.create(
                    spec.image,
                    entrypoint=["sleep", "infinity"],
                    command=[],
                    name=handle,
                    hostname=spec.workspace_id.replace("_", "-"),
                    labels={LABEL_MANAGED: "true", LABEL_ID: spec.workspace_id, LABEL_INSTANCE: self._instance_id},
                    environment=spec.env,
                    working_dir="/workspace",
                    runtime=self._runtime,
                    nano_cpus=int(spec.cpu * 1e9),
                    mem_limit=spec.memory_bytes,
                    memswap_limit=spec.memory_bytes,
                    pids_limit=PIDS_LIMIT,
                    network=self._network,
                    detach=True,
                )
            except docker.errors.NotFound as exc:
                if "network" in str(exc.explanation).lower():
                    self._network_ready = False
                raise
            try:
                container.start()
            except BaseException:
                self._remove(client, handle)
                raise
        return handle

    def destroy(self, handle: str) -> None:
        """Remove the container (killing it); a missing container is not an error."""
        with self._errors(f"destroying {handle}"):
            self._remove(self._docker(), handle)

    @staticmethod
    def _remove(client: docker.DockerClient, handle: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(handle, force=True, v=True)

    # ------------------------------------------------------------------ exec

    def exec(
        self,
        handle: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        timeout_s: float | None,
    ) -> ExecResult:
        """Run ``argv`` in the container; on timeout the whole process group is killed.

        The timeout is enforced inside the workspace by coreutils ``timeout`` (SIGTERM to
        the command's process group, SIGKILL 2 s later); the runtime stops reading at the
        same deadline plus a grace period whatever the image does.
        """
        if timeout_s is not None:
            argv = ["timeout", "-k", f"{_KILL_GRACE_S:g}", f"{timeout_s:.3f}", *argv]
        started = time.monotonic()
        with self._errors(f"exec in {handle}"):
            api = self._docker().api
            exec_id = api.exec_create(
                handle, argv, stdout=True, stderr=True, stdin=stdin is not None, workdir=cwd, environment=env or None
            )["Id"]
            stream = self._attach(api, exec_id)
            try:
                deadline = None if timeout_s is None else started + timeout_s + _KILL_GRACE_S + 1.0
                stdout, stderr, cut_off = pump(stream, stdin=stdin, deadline=deadline)
            finally:
                stream.sock.close()
            exit_code = self._exit_code(api, exec_id, cut_off)
        elapsed = time.monotonic() - started
        timed_out = cut_off or (timeout_s is not None and elapsed >= timeout_s and exit_code in (124, 137))
        return ExecResult(
            exit_code=exit_code, stdout=stdout, stderr=stderr, timed_out=timed_out, duration_ms=elapsed * 1000.0
        )

    def _attach(self, api: docker.APIClient, exec_id: str) -> ExecStream:
        if self._socket_path is not None:
            return open_unix_exec(self._socket_path, api.api_version, exec_id, timeout=_API_TIMEOUT_S)
        raw = api.exec_start(exec_id, socket=True)
        return ExecStream(getattr(raw, "_sock", raw))

    @staticmethod
    def _exit_code(api: docker.APIClient, exec_id: str, cut_off: bool) -> int:
        # Docker records the exit code just after closing the output stream; allow it a moment.
        for _ in range(50):
            info = api.exec_inspect(exec_id)
            if info.get("ExitCode") is not None and not info.get("Running"):
                return int(info["ExitCode"])
            if cut_off:
                return -1
            time.sleep(0.002)
        return -1
