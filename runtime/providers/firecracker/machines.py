"""Every microVM on this host: made, listed, reached, measured and removed. The VM-owning side.

This is what needs root - KVM, taps, loop-free block files, cgroups - and runs either in
the runtime itself (when it is root) or in ``workspaces firecracker-manager``, which
serves it over a Unix socket (``manager``). Each VM lives in ``DATA/vms/<workspace id>/``:

- ``machine.json``, the VM's label (``records.MachineRecord``), written before anything
  else is made for it and updated as each piece is: a restart finds every VM, tap and
  file of this host, and ``destroy`` removes whatever a crash left half-made;
- ``data.ext4``, the data drive (the workspace's disk, with the guest's settings);
- ``api.sock`` and ``vsock.sock``, the process's API and its vsock device (relative
  names: Unix socket paths are short, VM directories need not be);
- ``console.log``, the guest's serial console.

Create = label, rootfs (built once per image), tap, data drive, ``firecracker`` process,
its CPU cgroup, then the API calls in the order Firecracker takes them and
``InstanceStart``. Destroy = ``SendCtrlAltDel``, ``SIGKILL`` after a grace, tap, cgroup and
directory removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psutil

from runtime.agent import AGENT_ARGV
from runtime.errors import BadRequest, ProviderUnavailable, WorkspaceError
from runtime.messages import ResourceUsage
from runtime.providers.firecracker import process
from runtime.providers.firecracker.api import FirecrackerApi
from runtime.providers.firecracker.network import HostNetwork
from runtime.providers.firecracker.records import (
    MANAGED,
    MachineRecord,
    MachineSpec,
    MachineState,
    read_record,
    write_record,
)
from runtime.providers.firecracker.rootfs import Rootfs, make_data_drive
from runtime.providers.firecracker.vsock import connect

__all__ = ["AGENT_PORT", "BOOT_ARGS", "Boot", "Machines"]

log = logging.getLogger(__name__)

AGENT_PORT = 52
"""The guest's vsock port for the workspace agent."""
GUEST_CID = 3
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda ro rootfstype=ext4 init=/sbin/workspace-init"
_ID = re.compile(r"^ws_[A-Za-z0-9_-]{1,64}$")
_API_WAIT_S = 5.0


@dataclass(frozen=True)
class Boot:
    """What every VM boots: the ``firecracker`` binary, the guest kernel and its initrd.

    Attributes:
        firecracker: The binary (a path, or a name looked up on ``PATH``).
        kernel: An uncompressed guest kernel (``vmlinux``).
        initrd: The guest's initrd (``None``: the kernel mounts the root itself).
        jailer: ``FIRECRACKER_JAILER``: not supported yet, so a set one makes the provider unhealthy.
    """

    firecracker: str
    kernel: Path
    initrd: Path | None = None
    jailer: str | None = None


class Machines:
    """The VMs under ``data_dir``; thread-safe.

    Args:
        data_dir: ``DATA``: ``vms/`` and ``rootfs/`` live here.
        boot: The binary, kernel and initrd.
        network: The host bridge the VMs' taps join (``None``: VMs without a network).
        rootfs: Root filesystems by image (default: cached under ``DATA/rootfs``).
        stop_grace_s: How long a VM has to shut down after ``SendCtrlAltDel`` before ``SIGKILL``.
    """

    def __init__(
        self,
        data_dir: Path,
        boot: Boot,
        network: HostNetwork | None,
        *,
        rootfs: Rootfs | None = None,
        stop_grace_s: float = 1.0,
    ) -> None:
        self.data_dir = data_dir
        self.boot = boot
        self._vms = data_dir / "vms"
        self._network = network
        self._rootfs = rootfs or Rootfs(data_dir / "rootfs")
        self._stop_grace_s = stop_grace_s
        self._lock = threading.Lock()  # directory creation, network slots, the guards
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._launched: dict[str, subprocess.Popen[bytes]] = {}
        self._guards: dict[str, threading.Lock] = {}
        self._version: str | None = None

    # ------------------------------------------------------------------ health

    def probe(self) -> list[str]:
        """What is missing for VMs to run here, one clear line each (empty: nothing)."""
        problems: list[str] = []
        if not os.path.exists("/dev/kvm"):
            problems.append("/dev/kvm is missing: this host has no KVM")
        elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
            problems.append("/dev/kvm is not readable and writable by this process")
        binary = shutil.which(self.boot.firecracker)
        if binary is None:
            problems.append(f"firecracker binary not found at {self.boot.firecracker}")
        elif self.version() is None:
            problems.append(f"firecracker at {binary} does not run (`{binary} --version` failed)")
        if not self.boot.kernel.is_file():
            problems.append(f"guest kernel not found at {self.boot.kernel} (make firecracker-guest)")
        if self.boot.initrd is not None and not self.boot.initrd.is_file():
            problems.append(f"guest initrd not found at {self.boot.initrd} (make firecracker-guest)")
        if self.boot.jailer:
            problems.append(f"FIRECRACKER_JAILER={self.boot.jailer}: the jailer is not supported yet; unset it")
        if os.geteuid() != 0:
            problems.append("not root: run `workspaces firecracker-manager` as root and set FIRECRACKER_MANAGER_SOCKET")
        elif self._network is not None and (reason := self._network.probe()):
            problems.append(reason)
        return problems

    def version(self) -> str | None:
        """``firecracker --version``'s first line (asked once), ``None`` if it does not run."""
        if self._version is None:
            try:
                done = subprocess.run(
                    [self.boot.firecracker, "--version"], capture_output=True, timeout=10, check=True, text=True
                )
            except (OSError, subprocess.SubprocessError):
                return None
            self._version = (done.stdout.strip().splitlines() or ["firecracker"])[0]
        return self._version

    def start(self) -> None:
        """Ready the host (bridge, NAT) and remove taps no VM's label names (left by a crash)."""
        self._vms.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._network is None:
            return
        self._network.ensure()
        wanted = {record.tap for record in self._records().values() if record.tap}
        for tap in self._network.taps():
            if tap not in wanted:
                self._network.remove_tap(tap)

    # ------------------------------------------------------------------ lifecycle

    def create(self, spec: MachineSpec) -> None:
        """Make and boot ``spec``'s VM; its handle is the workspace id. A running VM of that id is kept.

        Raises:
            BadRequest: The id or the image is not acceptable.
            ProviderUnavailable: A step failed; nothing of the VM is left.
        """
        where = self._dir(spec.workspace_id)
        if not (math.isfinite(spec.cpu_quota) and 0 < spec.cpu_quota <= spec.vcpus) or spec.memory_mib <= 0:
            raise BadRequest(f"cpu {spec.cpu_quota:g} on {spec.vcpus} vCPUs with {spec.memory_mib} MiB is not a VM")
        with self._guard(spec.workspace_id):  # a destroy (or a retried create) waits for this one
            record = read_record(where / "machine.json")
            if record is not None and record.booted and process.alive(record.pid, record.pid_start):
                return  # a create retried after its answer was lost
            if where.exists():
                self._remove(spec.workspace_id)
            with self._lock:  # network slots are shared
                where.mkdir(parents=True, mode=0o700)
                record = MachineRecord(managed_by=MANAGED, spec=spec, created_at=time.time(), index=self._free_index())
                if self._network is not None:
                    record = msgspec.structs.replace(record, tap=self._network.tap_name(record.index))
                write_record(where / "machine.json", record)
            try:
                self._boot(where, record)
            except BaseException:
                self._remove(spec.workspace_id)
                raise

    def _boot(self, where: Path, record: MachineRecord) -> None:
        spec = record.spec
        rootfs = self._rootfs.ensure(spec.image)
        network: dict[str, Any] | None = None
        if self._network is not None:
            tap = self._network.add_tap(record.index)
            network = {
                "address": tap.address,
                "prefix": tap.prefix,
                "gateway": tap.gateway,
                "mac": tap.mac,
                "nameservers": self._network.nameservers(),
            }
        make_data_drive(where / "data.ext4", spec.disk_bytes, self._guest(spec, network))
        child = process.launch(
            # Firecracker's instance ids are letters, digits and '-' (at most 64).
            [self.boot.firecracker, "--api-sock", "api.sock", "--id", spec.workspace_id.replace("_", "-")],
            where,
            where / "console.log",
        )
        self._children[child.pid] = child
        self._launched[spec.workspace_id] = child  # found by _remove even before its label names it
        started = process.process_start(child.pid) or 0
        record = msgspec.structs.replace(record, pid=child.pid, pid_start=started)
        write_record(where / "machine.json", record)
        if not process.Cgroup(spec.workspace_id).limit(child.pid, spec.cpu_quota):
            log.warning("the CPU of %s could not be capped at %g (no usable cgroup)", spec.workspace_id, spec.cpu_quota)
        api = self._api(where, child)
        api.machine_config(spec.vcpus, spec.memory_mib)
        api.boot_source(self.boot.kernel, BOOT_ARGS, self.boot.initrd)
        api.drive("rootfs", rootfs, root=True, read_only=True)
        api.drive("data", where / "data.ext4", root=False, read_only=False)
        if network is not None:
            api.network_interface("eth0", record.tap, str(network["mac"]))
        api.vsock(GUEST_CID, Path("vsock.sock"))
        api.action("InstanceStart")
        write_record(where / "machine.json", msgspec.structs.replace(record, booted=True))
        self._launched.pop(spec.workspace_id, None)  # its label names it now

    def _guest(self, spec: MachineSpec, network: dict[str, Any] | None) -> dict[str, Any]:
        """The guest's settings (``guest.json`` on the data drive): what ``guest_init`` reads."""
        env = {**self._rootfs.image_env(spec.image), **spec.env}
        return {
            "workspace_id": spec.workspace_id,
            "hostname": spec.workspace_id.replace("_", "-"),
            "env": env,
            "vsock_port": AGENT_PORT,
            "agent_argv": AGENT_ARGV,
            "network": network,
        }

    def _api(self, where: Path, child: subprocess.Popen[bytes]) -> FirecrackerApi:
        """The process's API, once it answers (its socket file appears a moment before it listens)."""
        api = FirecrackerApi(where / "api.sock", timeout_s=_API_WAIT_S)
        deadline = time.monotonic() + _API_WAIT_S
        while True:
            if child.poll() is not None:
                raise ProviderUnavailable(f"firecracker exited at start ({child.returncode}): {self._console(where)}")
            if (where / "api.sock").exists():
                try:
                    api.describe()
                    return api
                except ProviderUnavailable:
                    pass
            if time.monotonic() > deadline:
                raise ProviderUnavailable(f"firecracker did not answer on its API socket within {_API_WAIT_S:g} s")
            time.sleep(0.005)

    def destroy(self, workspace_id: str) -> None:
        """Stop the VM and remove its tap, cgroup and files; a missing VM is not an error."""
        self._dir(workspace_id)  # refuses a malformed id
        with self._guard(workspace_id):
            self._remove(workspace_id)

    @contextlib.contextmanager
    def _guard(self, workspace_id: str) -> Iterator[None]:
        """One create or destroy of a VM at a time (others of other VMs go on)."""
        with self._lock:
            guard = self._guards.setdefault(workspace_id, threading.Lock())
        with guard:
            yield

    def _remove(self, workspace_id: str) -> None:
        where = self._vms / workspace_id
        record = read_record(where / "machine.json")
        launched = self._launched.pop(workspace_id, None)
        if launched is not None and launched.poll() is None and (record is None or record.pid != launched.pid):
            launched.kill()  # started, but its label does not name it yet
        if record is not None and record.pid:
            api = FirecrackerApi(where / "api.sock", timeout_s=1.0)
            process.stop(record.pid, record.pid_start, lambda: api.action("SendCtrlAltDel"), self._stop_grace_s)
        for child in (launched, self._children.pop(record.pid, None) if record else None):
            if child is not None:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:  # stuck in the kernel: states() reaps it later
                    self._children[child.pid] = child
        process.Cgroup(workspace_id).remove()
        if record is not None and record.tap and self._network is not None:
            try:
                self._network.remove_tap(record.tap)
            except WorkspaceError as exc:  # e.g. a tap of a bridge since renamed: the files go anyway
                log.warning("the tap %s of %s was not removed: %s", record.tap, workspace_id, exc.message)
        shutil.rmtree(where, ignore_errors=True)

    # ------------------------------------------------------------------ what exists

    def states(self) -> list[MachineState]:
        """Every VM with a label here, running or not."""
        for pid, child in list(self._children.items()):  # reap the ones that ended on their own
            if child.poll() is not None:
                self._children.pop(pid, None)
        states = []
        for workspace_id, record in self._records().items():
            running = record.booted and process.alive(record.pid, record.pid_start)
            detail = ""
            if not running:
                where = self._vms / workspace_id
                detail = f"its firecracker process ended: {self._console(where)}" if record.pid else "it never started"
            states.append(
                MachineState(workspace_id=workspace_id, instance=record.spec.instance, running=running, detail=detail)
            )
        return states

    def connect(self, workspace_id: str, port: int) -> Any:
        """A stream to ``port`` in the VM (a ``socket.socket``), past vsock's handshake."""
        return connect(self._dir(workspace_id) / "vsock.sock", port)

    def usage(self, workspace_ids: list[str]) -> dict[str, ResourceUsage]:
        """CPU time and resident memory of each VM's Firecracker process (the guest's, as the host sees it)."""
        found: dict[str, ResourceUsage] = {}
        for workspace_id in filter(_ID.match, workspace_ids):
            record = read_record(self._vms / workspace_id / "machine.json")
            if record is None or not process.alive(record.pid, record.pid_start):
                continue
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(record.pid)
                times = proc.cpu_times()
                found[workspace_id] = ResourceUsage(times.user + times.system, proc.memory_info().rss)
        return found

    def disk_usage(self, workspace_ids: list[str]) -> dict[str, int]:
        """Bytes each VM's data drive occupies on the host (it is sparse: what was written)."""
        found: dict[str, int] = {}
        for workspace_id in filter(_ID.match, workspace_ids):
            with contextlib.suppress(OSError):
                found[workspace_id] = (self._vms / workspace_id / "data.ext4").stat().st_blocks * 512
        return found

    # ------------------------------------------------------------------ helpers

    def _dir(self, workspace_id: str) -> Path:
        if not _ID.match(workspace_id):
            raise BadRequest(f"{workspace_id[:64]!r} is not a workspace id")
        return self._vms / workspace_id

    def _records(self) -> dict[str, MachineRecord]:
        records = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(self._vms.iterdir()):
                record = read_record(entry / "machine.json")
                if record is not None and record.spec.workspace_id == entry.name:
                    records[entry.name] = record
        return records

    def _free_index(self) -> int:
        taken = {record.index for record in self._records().values()}
        return next(index for index in range(1 << 16) if index not in taken)

    @staticmethod
    def _console(where: Path) -> str:
        """The console's last line, for errors (what the guest said as it ended)."""
        try:
            with open(where / "console.log", "rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
                lines = file.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "no console output"
        return lines[-1][:300] if lines else "no console output"
