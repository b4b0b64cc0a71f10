"""The VMM side of the stand-in: which action is allowed when, and what it does.

As ``src/vmm/src/rpc_interface.rs``: before ``InstanceStart`` the ``PrebootApiController``
takes configuration calls and refuses the runtime ones ("not supported before starting the
microVM"); after it the ``RuntimeApiController`` refuses configuration ("not supported
after starting the microVM"). Devices the workspace guest does not use (balloon, entropy,
serial, pmem, memory hotplug, MMDS) are accepted and remembered but not given to the guest;
runtime operations on them, snapshots and pause/resume are refused with a stand-in fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.firecracker_standin.boot import Guest
from tests.firecracker_standin.logs import Logger
from tests.firecracker_standin.resources import Fault, Resources, io_error
from tests.firecracker_standin.routes import Action

__all__ = ["Answer", "Vmm"]

T = TypeVar("T")

PRE_BOOT_ONLY = frozenset(
    {
        "ConfigureBootSource",
        "ConfigureLogger",
        "ConfigureMetrics",
        "ConfigureSerial",
        "LoadSnapshot",
        "PutCpuConfiguration",
        "SetBalloonDevice",
        "SetVsockDevice",
        "SetMmdsConfiguration",
        "SetEntropyDevice",
        "SetMemoryHotplugDevice",
        "StartMicroVm",
        "UpdateMachineConfiguration",
    }
)
POST_BOOT_ONLY = frozenset(
    {
        "CreateSnapshot",
        "FlushMetrics",
        "vm-state",
        "GetBalloonStats",
        "GetMemoryHotplugStatus",
        "UpdateBalloon",
        "UpdateBalloonStatistics",
        "UpdateBlockDevice",
        "UpdateMemoryHotplugSize",
        "UpdateNetworkInterface",
        "UpdatePmemDevice",
        "balloon-hinting",
        "GetFreePageHintingStatus",
        "SendCtrlAltDel",
    }
)
_REMEMBERED = {
    "SetBalloonDevice": "balloon",
    "SetEntropyDevice": "entropy",
    "ConfigureSerial": "serial",
    "PutCpuConfiguration": "cpu-config",
    "SetMemoryHotplugDevice": "memory-hotplug",
    "SetMmdsConfiguration": "mmds-config",
}
_BOOT_PATH = frozenset(
    {
        "ConfigureBootSource",
        "InsertBlockDevice",
        "InsertNetworkDevice",
        "InsertPmemDevice",
        "SetBalloonDevice",
        "SetMmdsConfiguration",
        "UpdateMachineConfiguration",
        "SetVsockDevice",
        "SetEntropyDevice",
        "SetMemoryHotplugDevice",
    }
)


@dataclass(frozen=True)
class Answer:
    """A response: ``204`` (``body`` None) or ``200``/``400`` with a JSON body."""

    status: int
    body: Any = None
    deprecated: bool = False


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396, as ``PATCH /mmds`` applies it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class Vmm:
    """One microVM's controller.

    Args:
        instance_id: ``--id``.
        version: What ``GET /version`` and ``GET /`` report.
        logger: Firecracker's log.
        on_main: Runs a callable on the main thread and returns its result (the guest is
            started there, see ``boot``).
    """

    def __init__(self, instance_id: str, version: str, logger: Logger, on_main: Callable[[Callable[[], T]], T]) -> None:
        self.instance_id, self.version, self.logger = instance_id, version, logger
        self.resources = Resources()
        self.guest: Guest | None = None
        self._on_main: Callable[[Callable[[], Any]], Any] = on_main
        self._boot_path = False
        self._mmds: Any = None
        self._metrics: Any = None

    @property
    def state(self) -> str:
        """``InstanceInfo.state``."""
        return "Running" if self.guest is not None else "Not started"

    def handle(self, action: Action) -> Answer:
        """Do ``action``; ``Fault`` becomes a ``400``."""
        try:
            if self.guest is None and action.name in POST_BOOT_ONLY:
                raise Fault("The requested operation is not supported before starting the microVM.")
            if self.guest is not None and action.name in PRE_BOOT_ONLY:
                raise Fault("The requested operation is not supported after starting the microVM.")
            if action.name in _BOOT_PATH:
                self._boot_path = True
            body = self._do(action)
        except Fault as exc:
            return Answer(400, {"fault_message": str(exc)}, action.deprecated)
        return Answer(204 if body is None else 200, body, action.deprecated)

    def _do(self, action: Action) -> Any:
        body, name = action.body, action.name
        getter = self._getters().get(name)
        if getter is not None:
            return getter()
        if name == "StartMicroVm":
            guest = Guest(self.resources)
            self._on_main(guest.boot)
            self.guest = guest
            return None
        if name == "SendCtrlAltDel":
            assert self.guest is not None
            self.guest.ctrl_alt_del()
            return None
        if name == "FlushMetrics":
            return self._flush_metrics()
        if name in ("InsertBlockDevice", "InsertNetworkDevice", "InsertPmemDevice") and self.guest is not None:
            raise Fault("PCI is not enabled")  # hot-plug needs --enable-pci, which the stand-in does not emulate
        setters: dict[str, Callable[[Any], None]] = {
            "ConfigureBootSource": self.resources.set_boot_source,
            "InsertBlockDevice": self.resources.insert_drive,
            "InsertNetworkDevice": self.resources.insert_net,
            "SetVsockDevice": self.resources.set_vsock,
            "UpdateMachineConfiguration": self.resources.update_machine,
            "ConfigureLogger": self._configure_logger,
            "ConfigureMetrics": self.configure_metrics,
            "PutMMDS": self._put_mmds,
            "PatchMMDS": lambda patch: self._put_mmds(_merge_patch(self._mmds, patch)),
            "InsertPmemDevice": lambda pmem: self.resources.other.setdefault("pmem", {}).__setitem__(pmem["id"], pmem),
        }
        if name in setters:
            setters[name](body)
            return None
        if name in _REMEMBERED:
            self.resources.other[_REMEMBERED[name]] = body
            return None
        if name == "LoadSnapshot" and self._boot_path:
            raise Fault(
                "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources."
            )
        raise Fault(f"The Firecracker stand-in does not emulate this operation ({name}).")

    def _getters(self) -> dict[str, Callable[[], Any]]:
        return {
            "GetVmInstanceInfo": lambda: {
                "id": self.instance_id,
                "state": self.state,
                "vmm_version": self.version,
                "app_name": "Firecracker",
            },
            "GetVmmVersion": lambda: {"firecracker_version": self.version},
            "GetFullVmConfig": self.resources.full_config,
            "GetVmMachineConfig": lambda: self.resources.machine,
            "GetMMDS": lambda: {} if self._mmds is None else self._mmds,
            "GetBalloonConfig": self._balloon,
        }

    def _balloon(self) -> Any:
        if "balloon" not in self.resources.other:
            raise Fault("Balloon config error: No balloon device found.")
        return self.resources.other["balloon"]

    def _put_mmds(self, value: Any) -> None:
        self._mmds = value

    def _configure_logger(self, body: dict[str, Any]) -> None:
        try:
            self.logger.configure(body.get("log_path"), body.get("level"), body.get("show_level"))
        except OSError as exc:
            raise Fault(f"Logger error: Failed to open target file: {io_error(exc)}") from None

    def configure_metrics(self, body: dict[str, Any]) -> None:
        """``--metrics-path`` or ``PUT /metrics``: the file ``FlushMetrics`` writes to (once only)."""
        if self._metrics is not None:
            raise Fault("Metrics error: Reinitialization of metrics not allowed.")
        try:
            fd = os.open(body["metrics_path"], os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise Fault(f"Metrics error: Failed to open target file: {io_error(exc)}") from None
        self._metrics = os.fdopen(fd, "ab", buffering=0)

    def _flush_metrics(self) -> None:
        if self._metrics is not None:
            line = {"utc_timestamp_ms": int(time.time() * 1000), "standin": True}
            with contextlib.suppress(OSError):
                self._metrics.write(json.dumps(line).encode() + b"\n")

    def close(self) -> None:
        """Let go of the guest and every resource."""
        if self.guest is not None:
            self.guest.close()
        self.resources.close()
