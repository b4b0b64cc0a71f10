"""The microVM's configuration as Firecracker builds it from pre-boot calls, with Firecracker's checks.

Each setter takes a body already checked against the spec and does what Firecracker's
``VmResources`` does with it (``src/vmm/src/resources.rs``, ``vmm_config/*.rs``): the
kernel and initrd are opened at ``PUT /boot-source``, a drive's backing file at
``PUT /drives`` (read-write unless ``is_read_only``), a tap at ``PUT /network-interfaces``
(``TUNSETIFF`` with ``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR``, then a 12-byte vnet header),
the vsock socket bound at ``PUT /vsock``. A refusal is ``Fault`` with Firecracker's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from tests.firecracker_standin import cmdline
from tests.firecracker_standin.vsock import VsockDevice, bind_error

__all__ = ["Drive", "Fault", "NetInterface", "Resources", "io_error"]

MAX_VCPUS = 32
_TUNSETIFF, _TUNSETVNETHDRSZ = 0x400454CA, 0x400454D8
_IFF_TAP, _IFF_NO_PI, _IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
_VNET_HDR_LEN = 12  # virtio_net_hdr_v1
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


class Fault(Exception):
    """A call Firecracker answers with ``400`` and ``{"fault_message": str(self)}``."""


def io_error(exc: OSError) -> str:
    """An ``OSError`` as Rust prints an ``io::Error``: ``<strerror> (os error <n>)``."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} (os error {exc.errno})"


@dataclass
class Drive:
    """A block device: its configuration and its open backing file."""

    config: dict[str, Any]
    fd: int

    @property
    def drive_id(self) -> str:
        return str(self.config["drive_id"])

    @property
    def root(self) -> bool:
        return bool(self.config["is_root_device"])

    @property
    def read_only(self) -> bool:
        return bool(self.config["is_read_only"])


@dataclass
class NetInterface:
    """A network device: its configuration and its tap (``tap_fd``, non-blocking)."""

    config: dict[str, Any]
    tap_fd: int

    @property
    def iface_id(self) -> str:
        return str(self.config["iface_id"])


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def open_tap(name: str) -> int:
    """A tap opened as ``Tap::open_named`` and ``Net::new`` open it; ``Fault`` in their words."""
    prefix = "Network config error: Could not create the network device: "
    if len(name.encode()) >= 16:
        raise Fault(f"{prefix}Open tap device failed: Invalid interface name")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Fault(f"{prefix}Open tap device failed: Couldn't open /dev/net/tun: {io_error(exc)}") from None
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR))
    except OSError as exc:
        _close(fd)
        raise Fault(
            f"{prefix}Open tap device failed: Error while creating ifreq structure: {io_error(exc)}. Invalid "
            f"TUN/TAP Backend provided by {name}. Check our documentation on setting up the network devices."
        ) from None
    try:
        fcntl.ioctl(fd, _TUNSETVNETHDRSZ, struct.pack("i", _VNET_HDR_LEN))
    except OSError as exc:
        _close(fd)
        raise Fault(
            f"{prefix}Setting vnet header size failed: Error while setting size of the vnet header: {io_error(exc)}"
        ) from None
    return fd


@dataclass
class Resources:
    """Everything configured before ``InstanceStart``."""

    machine: dict[str, Any] = field(
        default_factory=lambda: {
            "vcpu_count": 1,
            "mem_size_mib": 128,
            "smt": False,
            "track_dirty_pages": False,
            "huge_pages": "None",
        }
    )
    boot_source: dict[str, Any] | None = None
    boot_fds: list[int] = field(default_factory=list)
    drives: list[Drive] = field(default_factory=list)
    nets: list[NetInterface] = field(default_factory=list)
    vsock: VsockDevice | None = None
    other: dict[str, Any] = field(default_factory=dict)
    """Devices the guest does not get here (balloon, entropy, serial, mmds, ...): kept to be shown."""

    # ------------------------------------------------------------------ machine

    def update_machine(self, update: dict[str, Any]) -> None:
        """``MachineConfig::update``: vCPUs 1..=32 (1 or even with SMT), memory > 0 (even with huge pages)."""
        merged = dict(self.machine)
        merged.update({key: value for key, value in update.items() if key != "cpu_template"})
        if "cpu_template" in update and update["cpu_template"] != "None":
            merged["cpu_template"] = update["cpu_template"]
        elif "cpu_template" in update:
            merged.pop("cpu_template", None)
        vcpus, smt = merged["vcpu_count"], merged["smt"]
        if not 0 < vcpus <= MAX_VCPUS or (smt and vcpus > 1 and vcpus % 2):
            raise Fault(
                f"Machine config error: The number of vCPUs must be greater than 0, less than {MAX_VCPUS} and must "
                "be 1 or an even number if SMT is enabled."
            )
        memory = merged["mem_size_mib"]
        if memory <= 0 or (merged["huge_pages"] != "None" and memory % 2):
            raise Fault(
                "Machine config error: The memory size (MiB) is either 0, or not a multiple of the configured "
                "page size."
            )
        self.machine = merged

    # ------------------------------------------------------------------ boot source

    def set_boot_source(self, body: dict[str, Any]) -> None:
        """``BootConfig::new``: the kernel and initrd must open, the command line must be valid."""
        fds = []
        try:
            try:
                fds.append(os.open(body["kernel_image_path"], os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                raise Fault(f"Boot source error: The kernel file cannot be opened: {io_error(exc)}") from None
            if body.get("initrd_path") is not None:
                try:
                    fds.append(os.open(body["initrd_path"], os.O_RDONLY | os.O_CLOEXEC))
                except OSError as exc:
                    raise Fault(
                        "Boot source error: The initrd file cannot be opened due to invalid path or invalid "
                        f"permissions. {io_error(exc)}"
                    ) from None
            if body.get("boot_args") is not None and (problem := cmdline.validation_error(body["boot_args"])):
                raise Fault(f"Boot source error: The kernel command line is invalid: {problem}")
        except Fault:
            for fd in fds:
                _close(fd)
            raise
        for fd in self.boot_fds:
            _close(fd)
        self.boot_fds = fds
        self.boot_source = {
            "kernel_image_path": body["kernel_image_path"],
            "initrd_path": body.get("initrd_path"),
            "boot_args": body.get("boot_args"),
        }

    # ------------------------------------------------------------------ drives

    def insert_drive(self, body: dict[str, Any]) -> None:
        """``BlockBuilder::insert``: one root (kept first), same id = replace, the file must open."""
        prefix = "Drive config error: "
        position = next((i for i, d in enumerate(self.drives) if d.drive_id == body["drive_id"]), None)
        has_root = bool(self.drives) and self.drives[0].root
        if body["is_root_device"] and has_root and position != 0:
            raise Fault(f"{prefix}A root block device already exists!")
        path, socket_path = body.get("path_on_host"), body.get("socket")
        if path is None or socket_path is not None:
            if socket_path is not None and path is None:
                raise Fault(f"{prefix}Unable to create the virtio block device: the stand-in has no vhost-user")
            raise Fault(f"{prefix}Unable to create the virtio block device: Invalid block config.")
        read_only = bool(body.get("is_read_only", False))
        try:
            fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as exc:
            raise Fault(
                f"{prefix}Unable to create the virtio block device: Virtio backend error: Error manipulating the "
                f"backing file: {io_error(exc)} {path}"
            ) from None
        config = {
            "drive_id": body["drive_id"],
            "partuuid": body.get("partuuid"),
            "is_root_device": body["is_root_device"],
            "cache_type": body.get("cache_type", "Unsafe"),
            "is_read_only": read_only,
            "path_on_host": path,
            "rate_limiter": body.get("rate_limiter"),
            "io_engine": body.get("io_engine", "Sync"),
            "socket": None,
        }
        drive = Drive(config, fd)
        if position is None:
            self.drives.insert(0 if drive.root else len(self.drives), drive)
            return
        _close(self.drives[position].fd)
        self.drives[position] = drive
        if position and drive.root:
            self.drives[0], self.drives[position] = self.drives[position], self.drives[0]

    # ------------------------------------------------------------------ network

    def insert_net(self, body: dict[str, Any]) -> None:
        """``NetBuilder::build``: a free MAC, an MTU in 68..=65535, the tap must open; same id = replace."""
        mac = body.get("guest_mac")
        if mac is not None and not _MAC.fullmatch(mac):
            raise Fault(
                "An error occurred when deserializing the json body of a request: The provided MAC address is invalid."
            )
        mac = mac.lower() if mac else None
        if mac and any(n.config["guest_mac"] == mac and n.iface_id != body["iface_id"] for n in self.nets):
            raise Fault(f"Network config error: The MAC address is already in use: {mac}")
        for index, existing in enumerate(self.nets):
            if existing.iface_id == body["iface_id"]:
                _close(existing.tap_fd)
                self.nets[index] = self.nets[-1]  # Vec::swap_remove
                self.nets.pop()
                break
        mtu = body.get("mtu")
        if mtu is not None and not 68 <= mtu <= 65535:
            raise Fault(
                f"Network config error: Could not create the network device: MTU {mtu} is out of range [68, 65535]"
            )
        fd = open_tap(body["host_dev_name"])
        config = {
            "iface_id": body["iface_id"],
            "host_dev_name": body["host_dev_name"],
            "guest_mac": mac,
            "mtu": mtu,
            "rx_rate_limiter": body.get("rx_rate_limiter"),
            "tx_rate_limiter": body.get("tx_rate_limiter"),
        }
        self.nets.append(NetInterface(config, fd))

    # ------------------------------------------------------------------ vsock

    def set_vsock(self, body: dict[str, Any]) -> None:
        """``VsockBuilder::insert``: the old socket file is removed, the new path bound now."""
        prefix = "Vsock config error: Cannot create backend for vsock device: "
        if self.vsock is not None:
            old, self.vsock = self.vsock, None
            old.close()
            try:
                os.unlink(old.uds_path)
            except OSError as exc:
                raise Fault(prefix + bind_error(exc)) from None
        try:
            self.vsock = VsockDevice(int(body["guest_cid"]), body["uds_path"])
        except ValueError as exc:
            raise Fault(f"{prefix}Error binding to the host-side Unix socket: {exc}") from None
        except OSError as exc:
            raise Fault(prefix + bind_error(exc)) from None

    # ------------------------------------------------------------------ views

    def full_config(self) -> dict[str, Any]:
        """``GET /vm/config``: Firecracker's ``VmmConfig``, kebab-case keys."""
        return {
            "balloon": self.other.get("balloon"),
            "drives": [drive.config for drive in self.drives],
            "boot-source": self.boot_source or {"kernel_image_path": "", "initrd_path": None, "boot_args": None},
            "cpu-config": None,
            "logger": None,
            "machine-config": self.machine,
            "metrics": None,
            "mmds-config": self.other.get("mmds-config"),
            "network-interfaces": [net.config for net in self.nets],
            "vsock": self.vsock.config() if self.vsock else None,
            "entropy": self.other.get("entropy"),
            "pmem": list(self.other.get("pmem", {}).values()),
            "memory-hotplug": self.other.get("memory-hotplug"),
        }

    def close(self) -> None:
        """Let go of every file, tap and socket (the vsock socket file stays, as Firecracker leaves it)."""
        for fd in self.boot_fds:
            _close(fd)
        for drive in self.drives:
            _close(drive.fd)
        for net in self.nets:
            _close(net.tap_fd)
        if self.vsock is not None:
            self.vsock.close()
