"""The ``firecracker`` provider: each workspace a Firecracker microVM on this host's KVM.

``provider`` is the lifecycle the actors see; ``machines`` the VM-owning side (root:
KVM, taps, cgroups), served to a non-root runtime by ``manager``
(``workspaces firecracker-manager``); ``api`` speaks Firecracker's REST API on its Unix
socket, ``vsock`` its host-side vsock handshake, ``process`` one Firecracker process,
``network`` the host bridge and taps, ``rootfs`` the guest's root filesystem and data
drive, ``guest`` the guest kernel and initrd, and ``guest_init`` is the guest's PID 1,
which starts the same workspace agent as Docker workspaces on each vsock connection.
"""

from runtime.providers.firecracker.machines import AGENT_PORT, Boot, Machines
from runtime.providers.firecracker.manager import ManagerClient, ManagerServer
from runtime.providers.firecracker.provider import (
    FirecrackerProvider,
    firecracker_in_use,
    firecracker_provider,
    local_machines,
)

__all__ = [
    "AGENT_PORT",
    "Boot",
    "FirecrackerProvider",
    "Machines",
    "ManagerClient",
    "ManagerServer",
    "firecracker_in_use",
    "firecracker_provider",
    "local_machines",
]
