"""``InstanceStart`` in the stand-in: the drives become loop devices and the guest's init starts (``guest.py``).

The guest runs in a process of its own (``guest.py``: new namespaces, its init as PID 1),
started from the stand-in's main thread so that its ``PR_SET_PDEATHSIG`` follows the
stand-in's whole life (the signal fires when the thread that forked dies). Between the
namespaces' creation and init's start the network interfaces are attached: the hook is
``tests.firecracker_standin.net.attach`` when that module exists (see ``_attach_networks``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.firecracker_standin import cmdline
from tests.firecracker_standin.loop import LoopDevice, attach
from tests.firecracker_standin.resources import Fault, Resources, io_error

__all__ = ["GUEST_SCRIPT", "Guest"]

GUEST_SCRIPT = Path(__file__).resolve().with_name("guest.py")
_VIRTIO_BLK_MAJOR = 254  # what the root device's numbers are in a VM (vda = 254:0, vdb = 254:16)
_READY_TIMEOUT_S = 60.0
_FSTYPES = ("ext4", "ext3", "ext2", "xfs", "btrfs", "squashfs", "vfat")


def _random_mac() -> str:
    """A random, locally administered unicast MAC (``eth_random_addr``)."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{octet:02x}" for octet in octets)


def _net_hook() -> Any | None:
    """``tests.firecracker_standin.net`` if it exists (the network half of the stand-in)."""
    try:
        return importlib.import_module("tests.firecracker_standin.net")
    except ModuleNotFoundError as exc:
        if exc.name != "tests.firecracker_standin.net":
            raise
        return None


class Guest:
    """The booted guest of one stand-in.

    Args:
        resources: The configuration at ``InstanceStart``.
    """

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.loops: list[LoopDevice] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None
        self.started = False
        self.panic: str | None = None
        self._net_handles: list[Any] = []
        self._go: int | None = None
        self._status: IO[str] | None = None

    # ------------------------------------------------------------------ boot

    def boot(self) -> None:
        """Start the guest (on the main thread); return once init is exec'd (or the guest panicked).

        Raises:
            Fault: The VM cannot be built (``Start microvm error: ...``).
        """
        resources = self.resources
        if resources.boot_source is None:
            raise Fault("Start microvm error: Cannot start microvm without kernel configuration.")
        try:
            plan = self._plan()
            self._spawn(plan)
            self._until("ready")
            if self.panic is None:  # a guest that panicked before init is a booted VM all the same
                self._attach_networks()
                os.write(self._go_fd(), b"g")
                self._until("started")
        except Fault:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise Fault(f"Start microvm error: Unable to attach block device to Vmm: {io_error(exc)}") from None
        except Exception as exc:  # a fault of the stand-in itself: say so rather than hang the call
            self.close()
            raise Fault(f"Start microvm error: the Firecracker stand-in failed: {exc!r}") from None
        if self.started and resources.vsock is not None:
            resources.vsock.activate(lambda: f"/proc/{self.init_pid}/root")

    def _plan(self) -> dict[str, Any]:
        resources = self.resources
        assert resources.boot_source is not None
        root_drive = resources.drives[0] if resources.drives and resources.drives[0].root else None
        root_args = "" if root_drive is None else f"root=/dev/vda {'ro' if root_drive.read_only else 'rw'}"
        if root_drive is not None and root_drive.config.get("partuuid"):
            root_args = f"root=PARTUUID={root_drive.config['partuuid']} {'ro' if root_drive.read_only else 'rw'}"
        line = cmdline.parse(resources.boot_source["boot_args"], root_args)
        for drive in resources.drives:
            self.loops.append(attach(drive.fd, read_only=drive.read_only, name=drive.config["path_on_host"]))
        devices = [
            {"name": f"vd{chr(ord('a') + index)}", "major": loop.major, "minor": loop.minor}
            for index, loop in enumerate(self.loops)
        ]
        root = None
        names = {f"/dev/{device['name']}": index for index, device in enumerate(devices)}
        if line.root in names:
            index = names[line.root]
            root = {
                "device": self.loops[index].path,
                "fstypes": line.rootfstypes or list(_FSTYPES),
                "readonly": line.root_readonly or resources.drives[index].read_only,
                "major": _VIRTIO_BLK_MAJOR,
                "minor": 16 * index,
            }
        env = dict(line.init_env)
        env["WORKSPACE_INIT_VSOCK"] = "unix"
        return {
            "parent": os.getpid(),
            "console": line.serial_console,
            "root": root,
            "root_name": (line.root or "").removeprefix("/dev/"),
            "devices": devices,
            "init": line.init,
            "argv": line.init_argv,
            "env": env,
            "panic_s": line.panic_s,
        }

    def _spawn(self, plan: dict[str, Any]) -> None:
        go_r, go_w = os.pipe()
        status_r, status_w = os.pipe()
        plan.update(go_fd=go_r, status_fd=status_w)
        console = None if plan["console"] else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(GUEST_SCRIPT), json.dumps(plan)],
                stdin=console,
                stdout=console,
                stderr=console,
                pass_fds=(go_r, status_w),
                cwd="/",
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        finally:
            os.close(go_r)
            os.close(status_w)
        self._go = go_w
        self._status = os.fdopen(status_r, "r")

    def _go_fd(self) -> int:
        assert self._go is not None
        return self._go

    def _until(self, wanted: str) -> None:
        """Read the guest process's status lines until ``wanted`` (or a panic, which is a booted VM too)."""
        assert self._status is not None
        timer = threading.Timer(_READY_TIMEOUT_S, self._kill)
        timer.start()
        try:
            while True:
                line = self._status.readline().strip()
                if not line:
                    raise Fault("Start microvm error: the stand-in's guest process ended before its init started")
                word, _, rest = line.partition(" ")
                if word == "pid":
                    self.init_pid = int(rest)
                elif word == "panic":
                    self.panic = rest
                    return
                elif word == wanted:
                    self.started = wanted == "started"
                    return
        finally:
            timer.cancel()

    def _attach_networks(self) -> None:
        """Give the guest its network interfaces (``eth0``, ``eth1``... in Firecracker's device order).

        The hook is ``tests.firecracker_standin.net.attach``, called for each interface after
        the guest's namespaces exist and before its init starts; it returns an object whose
        ``close()`` is called when the VM ends. Two forms are understood::

            attach(tap_name, guest_netns_pid, guest_mac)
                # the stand-in first closes the tap it opened at PUT /network-interfaces,
                # so that attach can open it again (a tap takes one opener)
            attach(guest_pid=..., name="eth0", tap_fd=..., guest_mac=..., mtu=...)
                # tap_fd: the tap as Firecracker opened it (O_NONBLOCK, IFF_TAP | IFF_NO_PI |
                # IFF_VNET_HDR, 12-byte vnet header, no offloads), kept and closed by the stand-in

        Without a MAC in the configuration the guest's driver would pick a random one: so
        does the stand-in.
        """
        if not self.resources.nets:
            return
        net = _net_hook()
        if net is None:
            return  # the guest gets only lo: no network half installed
        assert self.init_pid is not None
        takes_fd = "tap_fd" in inspect.signature(net.attach).parameters
        for index, interface in enumerate(self.resources.nets):
            mac = interface.config["guest_mac"] or _random_mac()
            try:
                if takes_fd:
                    handle = net.attach(
                        guest_pid=self.init_pid,
                        name=f"eth{index}",
                        tap_fd=interface.tap_fd,
                        guest_mac=mac,
                        mtu=interface.config["mtu"],
                    )
                else:
                    os.close(interface.tap_fd)
                    interface.tap_fd = -1
                    handle = net.attach(interface.config["host_dev_name"], self.init_pid, mac)
            except Exception as exc:
                raise Fault(f"Start microvm error: Cannot create network device: {exc}") from None
            self._net_handles.append(handle)

    # ------------------------------------------------------------------ running

    def ctrl_alt_del(self) -> None:
        """The i8042's Ctrl-Alt-Del: ``SIGINT`` to init (Linux's ``C_A_D`` off, as the workspace init sets it)."""
        if self.init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGINT)

    def wait(self) -> None:
        """Until the guest is over (rebooted, powered off, or panicked and rebooted)."""
        if self.process is not None:
            self.process.wait()

    def _kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def close(self) -> None:
        """End the guest if it runs and let go of everything it held (loop devices clear themselves)."""
        self._kill()
        if self.process is not None:
            self.process.wait()
        for handle in self._net_handles:
            close: Callable[[], None] | None = getattr(handle, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._net_handles.clear()
        if self._go is not None:
            with contextlib.suppress(OSError):
                os.close(self._go)
            self._go = None
        if self._status is not None:
            self._status.close()
            self._status = None
        for loop in self.loops:
            loop.close()
        self.loops.clear()
