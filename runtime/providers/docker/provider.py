"""The ``gvisor`` provider: Docker containers under runsc (gVisor), or runc as fallback.

Each workspace is a container ``aw-<workspace id>`` with a named volume of the same name
mounted at ``/workspace``, both labelled so the runtime can find its own
(``agent-workspaces.managed``, ``.id``, ``.instance``). The container is limited in CPU,
memory (no swap) and pids, joins the isolated workspace network, and runs with few
capabilities, no privilege gain and optionally a read-only image (``hardening``). Docker's exceptions
are translated into ``WorkspaceError`` families here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import docker
import docker.errors
from docker.types import Mount

from runtime.agent import AgentExecutor
from runtime.errors import ProviderUnavailable, WorkspaceError
from runtime.messages import BackendState, Probe, ResourceUsage, WorkspaceSpec
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED
from runtime.providers.cgroups import CgroupFiles, find_cgroup, read_usage
from runtime.providers.diskusage import tree_usage
from runtime.providers.docker.commands import DockerExec
from runtime.providers.docker.connection import DockerConnection
from runtime.providers.docker.events import DockerEventWatch, exit_detail
from runtime.providers.docker.hardening import hardening

__all__ = ["ICC_OPTION", "MANAGED_NETWORK", "PIDS_LIMIT", "DockerProvider"]

log = logging.getLogger(__name__)

MANAGED_NETWORK = "workspace_net"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
PIDS_LIMIT = 1024
"""Host tasks per workspace. Under runsc this bounds the sandbox's own threads, so a fork
bomb inside ends with the sandbox hitting its memory limit (see docs/limits.md)."""


class DockerProvider:
    """A blocking, thread-safe adapter to the Docker daemon.

    Commands run through each workspace's agent, or ``docker exec`` while it has none
    (``commands``: an ``AgentExecutor`` with ``DockerExec`` as its fallback).

    Args:
        instance_id: This runtime's id, put on every container and volume it creates.
        default_image: The image whose presence the health check verifies.
        network_name: The network workspaces join; empty means the managed ``workspace_net``.
        docker_host: The daemon address (``DOCKER_HOST`` syntax); ``None`` reads the environment.
        name: The provider's name in records and the ``providers`` op.
        runtimes: OCI runtimes in order of preference; the first Docker has is used.
        read_only_root: Mount each workspace's image read-only (``WORKSPACE_READ_ONLY_ROOT``;
            see ``runtime.providers.docker.hardening``).
    """

    def __init__(
        self,
        *,
        instance_id: str,
        default_image: str,
        network_name: str = "",
        docker_host: str | None = None,
        name: str = "gvisor",
        runtimes: tuple[str, ...] = ("runsc", "runc"),
        read_only_root: bool = False,
    ) -> None:
        self.name = name
        self._instance_id = instance_id
        self._default_image = default_image
        self._network = network_name or MANAGED_NETWORK
        self._connection = DockerConnection(docker_host)
        self._docker = self._connection.client
        self._errors = self._connection.errors
        self._preference = runtimes
        self._read_only_root = read_only_root
        self._runtime = runtimes[0]
        self._network_id = ""
        self._network_lock = threading.Lock()
        self._warned_fallback = False
        self._paths: dict[str, tuple[str, ...]] = {}
        self._cgroups: dict[str, CgroupFiles] = {}
        self._exec = DockerExec(self._connection)
        self.commands = AgentExecutor(self._exec.open_agent, fallback=self._exec)

    @property
    def where(self) -> str:
        """The daemon address, for messages."""
        return self._connection.where

    def _labels(self, workspace_id: str) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_ID: workspace_id, LABEL_INSTANCE: self._instance_id}

    # ------------------------------------------------------------------ health

    def probe(self) -> Probe:
        """Check the daemon, the runtime (runsc or the fallback), the network and the image."""
        try:
            with self._errors("health check"):
                client = self._docker()
                info = client.info()
                available: dict[str, Any] = info.get("Runtimes", {}) or {}
                runtime = next((name for name in self._preference if name in available), "runc")
                self._runtime = runtime
                notes = []
                if runtime != self._preference[0]:
                    notes.append(f"Docker has no {self._preference[0]} runtime: workspaces run on {runtime}")
                    if not self._warned_fallback:
                        log.warning(
                            "Docker has no %s runtime; workspaces fall back to %s", self._preference[0], runtime
                        )
                        self._warned_fallback = True
                if runtime == "runsc" and "--network=host" in (available["runsc"].get("runtimeArgs") or []):
                    notes.append(
                        "runsc uses --network=host inside each container's namespace (gVisor's netstack is off)"
                    )
                data_root = str(info.get("DockerRootDir", ""))
                problem = self._network_problem(client) or self._image_problem(client)
                if problem:
                    return Probe(False, runtime, problem, data_root)
                return Probe(True, runtime, "; ".join(notes), data_root)
        except WorkspaceError as exc:
            return Probe(False, self._runtime, exc.message)

    def _image_problem(self, client: docker.DockerClient) -> str:
        try:
            client.images.get(self._default_image)
        except docker.errors.ImageNotFound:
            return f"default image {self._default_image} is missing: run `make setup` to build it"
        return ""

    def _find_network(self, client: docker.DockerClient) -> dict[str, Any] | None:
        """The workspace network by exact name (its list entry), or ``None``.

        Docker does not make network names unique under concurrent creation; should
        duplicates exist, the oldest is kept and the unused others are removed.
        """
        found: list[dict[str, Any]] = [
            net for net in client.api.networks(names=[self._network]) if net.get("Name") == self._network
        ]
        if not found:
            return None
        found.sort(key=lambda net: str(net.get("Created", "")))
        for extra in found[1:]:
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_network(extra["Id"])
        return found[0]

    def _network_problem(self, client: docker.DockerClient) -> str:
        network = self._find_network(client)
        if network is None:
            if self._network == MANAGED_NETWORK:
                return ""  # created with the first workspace
            return f"WORKSPACE_NETWORK_NAME={self._network!r}: no such Docker network"
        if (network.get("Options") or {}).get(ICC_OPTION) != "false":
            self._network_id = ""
            return (
                f"network {self._network} lets containers reach each other ({ICC_OPTION} is not false): "
                f"recreate it with -o {ICC_OPTION}=false, or leave WORKSPACE_NETWORK_NAME empty"
            )
        return ""

    # ------------------------------------------------------------------ lifecycle

    def _ensure_network(self, client: docker.DockerClient) -> str:
        """The id of the workspace network, creating the managed one if it is missing."""
        with self._network_lock:  # one creator at a time: concurrent creates make duplicates
            if self._network_id:
                return self._network_id
            problem = self._network_problem(client)
            if problem:
                raise ProviderUnavailable(problem, retryable=False)
            network = self._find_network(client)
            if network is not None:
                self._network_id = str(network["Id"])
            else:
                created = client.api.create_network(
                    MANAGED_NETWORK,
                    driver="bridge",
                    options={ICC_OPTION: "false"},
                    labels={LABEL_MANAGED: "true"},
                    check_duplicate=True,
                )
                self._network_id = str(created["Id"])
            return self._network_id

    def create(self, spec: WorkspaceSpec) -> str:
        """Create the workspace's volume and container and start it; return its name."""
        handle = f"aw-{spec.workspace_id}"
        with self._errors(f"creating {spec.workspace_id}"):
            client = self._docker()
            network_id = self._ensure_network(client)
            labels = self._labels(spec.workspace_id)
            client.api.create_volume(handle, labels=labels)
            try:
                client.api.create_container(
                    spec.image,
                    entrypoint=["sleep", "infinity"],
                    name=handle,
                    hostname=spec.workspace_id.replace("_", "-"),
                    labels=labels,
                    environment=spec.env,
                    working_dir="/workspace",
                    host_config=client.api.create_host_config(
                        runtime=self._runtime,
                        init=True,  # tini as PID 1 reaps orphans; `sleep` alone would leave zombies
                        nano_cpus=int(spec.cpu * 1e9),
                        mem_limit=spec.memory_bytes,
                        memswap_limit=spec.memory_bytes,
                        pids_limit=PIDS_LIMIT,
                        network_mode=network_id,
                        mounts=[Mount("/workspace", handle, type="volume")],
                        **hardening(read_only_root=self._read_only_root, memory_bytes=spec.memory_bytes),
                    ),
                )
                client.api.start(handle)
            except BaseException as exc:
                if isinstance(exc, docker.errors.NotFound) and "network" in str(exc.explanation).lower():
                    self._network_id = ""  # removed behind our back: look it up (or create it) again
                self._remove(client, handle)
                raise
        self.commands.start(handle)  # ready for the first command, off the create's path
        return handle

    def destroy(self, handle: str) -> None:
        """Remove the container (killing it) and its volume; missing ones are fine."""
        self.commands.cancel(handle)
        with self._errors(f"destroying {handle}"):
            self._remove(self._docker(), handle)
        self._paths.pop(handle, None)
        self._cgroups.pop(handle, None)
        self.commands.removed(handle)

    @staticmethod
    def _remove(client: docker.DockerClient, handle: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(handle, force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_volume(handle, force=True)

    # ------------------------------------------------------------------ observation

    def inventory(self) -> dict[str, BackendState]:
        """This runtime's workspaces by id: containers running or not, and lone volumes."""
        label = {"label": f"{LABEL_INSTANCE}={self._instance_id}"}
        with self._errors("listing workspaces"):
            api = self._docker().api
            containers = api.containers(all=True, filters=label)
            volumes = api.volumes(filters=label).get("Volumes") or []
        states = {}
        for container in containers:
            workspace_id = (container.get("Labels") or {}).get(LABEL_ID)
            if not workspace_id:
                continue
            running = container.get("State") == "running"
            detail = "" if running else f"the workspace's container is {container.get('Status', 'stopped').lower()}"
            handle = (container.get("Names") or [f"/aw-{workspace_id}"])[0].lstrip("/")
            states[workspace_id] = BackendState(
                workspace_id=workspace_id, handle=handle, running=running, detail=detail
            )
        for volume in volumes:
            workspace_id = (volume.get("Labels") or {}).get(LABEL_ID)
            if workspace_id and workspace_id not in states:
                detail = "only the workspace's volume is left"
                states[workspace_id] = BackendState(
                    workspace_id=workspace_id, handle=str(volume["Name"]), running=False, detail=detail
                )
        return states

    def renew(self, expiries: Mapping[str, float | None]) -> None:
        """Nothing to do: a container lives until it is removed (the reaper enforces expiry)."""

    def watch(self) -> DockerEventWatch:
        """Docker's events about this runtime's containers (oom, die, destroy)."""
        with self._errors("watching events"):
            client = self._docker()
            return DockerEventWatch(client, self._instance_id, lambda handle: exit_detail(client, handle))

    def disk_usage(self, handles: list[str]) -> dict[str, int]:
        """Bytes each workspace occupies: its volume plus its container's writable layer.

        Measured on the host filesystem (the runtime runs beside the daemon); workspaces
        whose directories cannot be found or read are left out.
        """
        usage: dict[str, int] = {}
        for handle in handles:
            paths = self._paths.get(handle)
            if paths is None:
                try:
                    with self._errors(f"inspecting {handle}"):
                        paths = self._data_paths(handle)
                except WorkspaceError:
                    continue
                self._paths[handle] = paths
            if all(os.path.isdir(path) for path in paths):
                usage[handle] = tree_usage(*paths)
        return usage

    def resource_usage(self, handles: list[str]) -> dict[str, ResourceUsage]:
        """CPU time and memory of each workspace from its cgroup (found once per container).

        Measured on the host, like disk use; a workspace whose cgroup cannot be read
        (stopped, or the runtime is not beside the daemon) is left out.
        """
        usage: dict[str, ResourceUsage] = {}
        for handle in handles:
            files = self._cgroups.get(handle)
            if files is None:
                try:
                    with self._errors(f"inspecting {handle}"):
                        pid = int(self._docker().api.inspect_container(handle)["State"]["Pid"] or 0)
                except (WorkspaceError, KeyError, TypeError, ValueError):
                    continue
                files = find_cgroup(pid) if pid > 0 else None
                if files is None:
                    continue
                self._cgroups[handle] = files
            try:
                usage[handle] = read_usage(files)
            except (OSError, ValueError):
                self._cgroups.pop(handle, None)  # gone, or restarted into another cgroup
        return usage

    def _data_paths(self, handle: str) -> tuple[str, ...]:
        api = self._docker().api
        container = api.inspect_container(handle)
        paths = [str((container.get("GraphDriver") or {}).get("Data", {}).get("UpperDir", ""))]
        paths += [
            str(mount.get("Source", "")) for mount in container.get("Mounts", []) if mount.get("Type") == "volume"
        ]
        return tuple(path for path in paths if path)

    def close(self) -> None:
        """Close every workspace's agent channel (the agents exit; workspaces keep running)."""
        self.commands.close()
