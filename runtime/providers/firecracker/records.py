"""What the VM-owning side is asked for and keeps about each microVM.

``MachineSpec`` is a request to run one workspace's VM (from the provider, in process or
over the manager's socket); ``MachineRecord`` is the VM's label on disk - the
``machine.json`` in its directory, written before anything else is made for it, so a
restart (even after ``kill -9``) finds every VM, tap and file of this runtime;
``MachineState`` is one line of the inventory.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

__all__ = ["MANAGED", "MachineRecord", "MachineSpec", "MachineState", "read_record", "write_record"]

MANAGED = "agent-workspaces"
"""The ``managed_by`` of every machine record: what the reaper and reconciliation look for."""


class MachineSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One workspace's VM, as the provider asks for it.

    Attributes:
        workspace_id: The workspace (and the VM's id and directory name).
        instance: The runtime instance that owns it.
        image: The Docker image its root filesystem is built from.
        vcpus: Whole vCPUs (the workspace's CPU, rounded up); ``cpu_quota`` caps the time.
        cpu_quota: The workspace's CPU in cores (``cpu.max`` of the VM's cgroup, when there is one).
        memory_mib: The VM's memory.
        disk_bytes: The data drive's size: every write in the workspace lands there.
        env: The workspace's environment variables.
    """

    workspace_id: str
    instance: str
    image: str
    vcpus: int
    cpu_quota: float
    memory_mib: int
    disk_bytes: int
    env: dict[str, str] = {}


class MachineRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The label of one VM on disk (``machine.json``).

    Attributes:
        managed_by: Always ``MANAGED``.
        spec: What was asked for.
        created_at: When its directory was made.
        index: Its network slot (its tap and address derive from it).
        tap: Its tap device, empty while none is made.
        pid: The Firecracker process, 0 before it is started.
        pid_start: That process's start time (``/proc/<pid>/stat`` field 22), so a reused
            pid is never mistaken for it.
        booted: ``InstanceStart`` was answered.
    """

    managed_by: str
    spec: MachineSpec
    created_at: float
    index: int
    tap: str = ""
    pid: int = 0
    pid_start: int = 0
    booted: bool = False


class MachineState(msgspec.Struct, frozen=True, kw_only=True):
    """One VM as the inventory sees it.

    Attributes:
        workspace_id: The workspace.
        instance: The runtime instance that owns it.
        running: Its Firecracker process is alive and the VM was started.
        detail: Why it is not running (empty when it is).
    """

    workspace_id: str
    instance: str
    running: bool
    detail: str = ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(MachineRecord)


def write_record(path: Path, record: MachineRecord) -> None:
    """Replace ``path`` with ``record`` atomically (written, synced, renamed)."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as file:
        file.write(_encoder.encode(record))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def read_record(path: Path) -> MachineRecord | None:
    """The record at ``path``; ``None`` when it is missing or unreadable (not one of ours)."""
    try:
        record = _decoder.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    return record if record.managed_by == MANAGED else None
