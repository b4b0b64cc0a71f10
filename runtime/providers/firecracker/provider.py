"""The ``firecracker`` provider: each workspace a microVM, its agent reached over vsock.

The lifecycle goes to a ``MachineHost``: ``Machines`` in this process (the runtime is root)
or ``ManagerClient``, the same calls served by ``workspaces firecracker-manager``
(``FIRECRACKER_MANAGER_SOCKET``). What runs inside goes through the same workspace agent
as Docker workspaces (``runtime.agent``), over a vsock connection to port ``AGENT_PORT``,
with no fallback: a VM has no ``docker exec``. ``create`` returns once the guest's agent
answers, so a ``ready`` workspace serves at once.

- CPU: ``ceil(cpu)`` vCPUs, the VM's cgroup capped at ``cpu`` cores; memory: the VM's
  size; disk: the data drive's size, a hard limit (every write lands there).
- Inventory and events: the VMs' labels on disk; a watch thread compares listings
  (``died``: the Firecracker process ended; ``vanished``: its label is gone).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from runtime.agent import AgentChannel, AgentExecutor
from runtime.config import Settings
from runtime.errors import ConfigError, ProviderUnavailable, WorkspaceError
from runtime.messages import BackendState, ContainerEvent, Probe, ResourceUsage, WorkspaceSpec
from runtime.providers.firecracker.guest import DEFAULT_OUT
from runtime.providers.firecracker.machines import AGENT_PORT, Boot, Machines
from runtime.providers.firecracker.manager import ManagerClient
from runtime.providers.firecracker.network import HostNetwork
from runtime.providers.firecracker.records import MachineSpec, MachineState

__all__ = [
    "DEFAULT_GUEST",
    "FirecrackerProvider",
    "MachineHost",
    "firecracker_in_use",
    "firecracker_provider",
    "local_machines",
]

DEFAULT_GUEST = DEFAULT_OUT
"""Where ``make firecracker-guest`` puts ``vmlinux`` and ``initrd.img``."""
_MIB = 1 << 20
_MIN_MEMORY_MIB = 128


class MachineHost(Protocol):
    """The VM-owning side: ``Machines``, or ``ManagerClient`` for one in another process."""

    def probe(self) -> list[str]:
        """What is missing for VMs to run, one line each."""
        ...

    def version(self) -> str | None:
        """``firecracker --version``, ``None`` if it does not run."""
        ...

    def start(self) -> None:
        """Ready the host (bridge, NAT) once its probe passes."""
        ...

    def create(self, spec: MachineSpec) -> None:
        """Make and boot a VM; nothing is left if it fails."""
        ...

    def destroy(self, workspace_id: str) -> None:
        """Stop and remove a VM; a missing one is not an error."""
        ...

    def states(self) -> list[MachineState]:
        """Every VM with a label on this host."""
        ...

    def connect(self, workspace_id: str, port: int) -> Any:
        """A ``socket.socket`` to ``port`` in the VM."""
        ...

    def usage(self, workspace_ids: list[str]) -> dict[str, ResourceUsage]:
        """CPU time and memory by VM."""
        ...

    def disk_usage(self, workspace_ids: list[str]) -> dict[str, int]:
        """Data drive bytes on the host by VM."""
        ...


class _Watch:
    """Events from comparing the VM listing every ``every_s`` (``EventWatch``)."""

    def __init__(self, provider: FirecrackerProvider, every_s: float) -> None:
        self._provider = provider
        self._every_s = every_s
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[ContainerEvent]:
        running: dict[str, bool] = {}
        while not self._closed.is_set():
            with contextlib.suppress(WorkspaceError, OSError):
                now = {state.workspace_id: state for state in self._provider.machines()}
                for workspace_id, was_running in running.items():
                    state = now.get(workspace_id)
                    if self._provider.going(workspace_id):
                        if state is None:
                            self._provider.gone(workspace_id)
                        continue
                    if state is None:
                        yield ContainerEvent(workspace_id, "vanished", "its microVM was removed")
                    elif was_running and not state.running:
                        yield ContainerEvent(workspace_id, "died", state.detail or "its microVM stopped")
                running = {key: state.running for key, state in now.items()}
            self._closed.wait(self._every_s)

    def close(self) -> None:
        self._closed.set()


class FirecrackerProvider:
    """Workspaces as Firecracker microVMs.

    Args:
        host: Where the VMs are made.
        instance_id: This runtime's instance (on every VM's label).
        boot_timeout_s: How long a new VM has to boot and answer on vsock.
        watch_every_s: The event watch's listing period.
    """

    name = "firecracker"

    def __init__(
        self, host: MachineHost, instance_id: str, *, boot_timeout_s: float = 60.0, watch_every_s: float = 1.0
    ) -> None:
        self.instance_id = instance_id
        self._host = host
        self._boot_timeout_s = boot_timeout_s
        self._watch_every_s = watch_every_s
        self._executor = AgentExecutor(self._open_channel, fallback=None, retry_after_s=1.0)
        self._lock = threading.Lock()
        self._booting: dict[str, float] = {}
        self._going: set[str] = set()
        self._started = False

    @property
    def commands(self) -> AgentExecutor:
        """Commands, files and streamed processes through each VM's agent."""
        return self._executor

    def probe(self) -> Probe:
        """KVM, the binary, the guest kernel, the network and (if used) the manager, one line per missing piece."""
        problems = self._host.probe()
        if not problems and not self._started:
            try:
                self._host.start()
                self._started = True
            except WorkspaceError as exc:
                problems.append(exc.message)
        if problems:
            return Probe(False, "firecracker", "; ".join(problems))
        return Probe(True, "firecracker", self._host.version() or "")

    def create(self, spec: WorkspaceSpec) -> str:
        """Boot a VM for ``spec`` and wait for its agent; its handle is the workspace id."""
        handle = spec.workspace_id
        machine = MachineSpec(
            workspace_id=handle,
            instance=self.instance_id,
            image=spec.image,
            vcpus=max(1, math.ceil(spec.cpu)),
            cpu_quota=spec.cpu,
            memory_mib=max(_MIN_MEMORY_MIB, spec.memory_bytes // _MIB),
            disk_bytes=spec.disk_bytes,
            env=dict(spec.env),
        )
        with self._lock:
            self._booting[handle] = time.monotonic() + self._boot_timeout_s
            self._going.discard(handle)
        try:
            self._host.create(machine)
            self._executor.ready(handle, self._boot_timeout_s)
        except BaseException as exc:
            with contextlib.suppress(WorkspaceError):
                self.destroy(handle)
            if isinstance(exc, WorkspaceError) and not isinstance(exc, ProviderUnavailable):
                raise
            if isinstance(exc, WorkspaceError):
                raise ProviderUnavailable(f"the microVM did not come up: {exc.message}") from None
            raise
        finally:
            with self._lock:
                self._booting.pop(handle, None)
        return handle

    def _open_channel(self, handle: str) -> AgentChannel:
        """A new agent in the VM: a vsock connection to its init, which starts one per connection.

        While the VM boots, "nothing listens yet" is waited out until its boot deadline.
        """
        with self._lock:
            deadline = self._booting.get(handle, 0.0)
        while True:
            try:
                sock = self._host.connect(handle, AGENT_PORT)
            except ProviderUnavailable as exc:
                if not exc.retryable or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)
                continue
            return AgentChannel(sock, handle)

    def destroy(self, handle: str) -> None:
        """Stop the VM and remove everything of it; a missing VM is not an error."""
        with self._lock:
            self._going.add(handle)
        self._executor.cancel(handle)
        self._host.destroy(handle)
        self._executor.removed(handle)

    def going(self, handle: str) -> bool:
        """Whether the runtime is removing (or removed) this VM itself (no event for it)."""
        with self._lock:
            return handle in self._going

    def gone(self, handle: str) -> None:
        """A VM the runtime destroyed has left the listing: nothing more to hold about it."""
        with self._lock:
            self._going.discard(handle)

    def machines(self) -> list[MachineState]:
        """This runtime's VMs."""
        return [state for state in self._host.states() if state.instance == self.instance_id]

    def inventory(self) -> dict[str, BackendState]:
        """This runtime's VMs by workspace id (the handle is the id)."""
        return {
            state.workspace_id: BackendState(
                workspace_id=state.workspace_id, handle=state.workspace_id, running=state.running, detail=state.detail
            )
            for state in self.machines()
        }

    def renew(self, expiries: Mapping[str, float | None]) -> None:
        """Nothing: a VM runs until the runtime destroys it."""

    def watch(self) -> _Watch:
        """VMs that stopped or vanished behind the runtime's back."""
        return _Watch(self, self._watch_every_s)

    def disk_usage(self, handles: list[str]) -> dict[str, int]:
        """What each VM's data drive holds on the host."""
        return self._host.disk_usage(handles)

    def resource_usage(self, handles: list[str]) -> dict[str, ResourceUsage]:
        """CPU time and memory of each VM's Firecracker process."""
        return self._host.usage(handles)

    def close(self) -> None:
        """Close the agents' connections; the VMs keep running."""
        self._executor.close()


def firecracker_in_use(settings: Settings) -> bool:
    """Whether this runtime serves ``firecracker``: the default or a fallback, or configured."""
    return bool(
        settings.default_provider == "firecracker"
        or "firecracker" in settings.fallback_providers
        or settings.firecracker_bin
        or settings.firecracker_manager_socket
    )


def local_machines(settings: Settings) -> Machines:
    """``Machines`` in this process, from the ``FIRECRACKER_*`` settings."""
    kernel = Path(settings.firecracker_kernel) if settings.firecracker_kernel else DEFAULT_GUEST / "vmlinux"
    if settings.firecracker_initrd:
        initrd: Path | None = Path(settings.firecracker_initrd)
    else:
        initrd = DEFAULT_GUEST / "initrd.img" if kernel == DEFAULT_GUEST / "vmlinux" else None
    boot = Boot(
        firecracker=settings.firecracker_bin or "firecracker",
        kernel=kernel,
        initrd=initrd,
        jailer=settings.firecracker_jailer,
    )
    try:
        network = HostNetwork(bridge=settings.firecracker_bridge, subnet=settings.firecracker_subnet)
    except ConfigError as exc:
        raise ConfigError(
            f"FIRECRACKER_BRIDGE={settings.firecracker_bridge!r} / FIRECRACKER_SUBNET={settings.firecracker_subnet!r}: "
            f"{exc.message}"
        ) from None
    return Machines(settings.state_dir / "firecracker", boot, network)


def firecracker_provider(settings: Settings, instance_id: str) -> FirecrackerProvider:
    """The provider as the settings configure it: through the manager's socket, or owning the VMs."""
    host: MachineHost
    if settings.firecracker_manager_socket:
        host = ManagerClient(Path(settings.firecracker_manager_socket))
    else:
        host = local_machines(settings)
    return FirecrackerProvider(host, instance_id)
