"""From an HTTP request to a VMM action, refusing what Firecracker's API server refuses before the VMM sees it.

As ``src/firecracker/src/api_server/parsed_request.rs`` and ``request/*.rs``: the first
path segment picks the handler; a ``GET`` with a body, a ``PUT``/``PATCH`` without one, an
unknown path are refused there; resource ids come from the path (``The ID cannot be
empty.``, only alphanumerics and ``_``); the body is deserialized (serde: here, the spec's
schema plus ``deny_unknown_fields``); the id in the body must be the path's. On top of
Firecracker's router, a method and path that the spec does not list are refused as an
unknown path (Firecracker's router ignores trailing segments such as ``/actions/x``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.firecracker_standin.resources import Fault
from tests.firecracker_standin.spec import BodyError, Spec, parse_json

__all__ = ["Action", "route"]

_SERDE = "An error occurred when deserializing the json body of a request: "
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")

# (method, first segment, second segment or None for "any") -> (action, body definition)
_GET = {
    ("", None): "GetVmInstanceInfo",
    ("balloon", "statistics"): "GetBalloonStats",
    ("balloon", "hinting"): "GetFreePageHintingStatus",
    ("balloon", None): "GetBalloonConfig",
    ("version", None): "GetVmmVersion",
    ("vm", "config"): "GetFullVmConfig",
    ("machine-config", None): "GetVmMachineConfig",
    ("mmds", None): "GetMMDS",
    ("hotplug", "memory"): "GetMemoryHotplugStatus",
}
_PUT = {
    ("actions", None): "actions",
    ("balloon", None): "SetBalloonDevice",
    ("boot-source", None): "ConfigureBootSource",
    ("cpu-config", None): "PutCpuConfiguration",
    ("drives", None): "InsertBlockDevice",
    ("pmem", None): "InsertPmemDevice",
    ("logger", None): "ConfigureLogger",
    ("serial", None): "ConfigureSerial",
    ("machine-config", None): "UpdateMachineConfiguration",
    ("metrics", None): "ConfigureMetrics",
    ("mmds", "config"): "SetMmdsConfiguration",
    ("mmds", None): "PutMMDS",
    ("network-interfaces", None): "InsertNetworkDevice",
    ("snapshot", "create"): "CreateSnapshot",
    ("snapshot", "load"): "LoadSnapshot",
    ("vsock", None): "SetVsockDevice",
    ("entropy", None): "SetEntropyDevice",
    ("hotplug", "memory"): "SetMemoryHotplugDevice",
}
_PATCH = {
    ("balloon", "statistics"): "UpdateBalloonStatistics",
    ("balloon", "hinting"): "balloon-hinting",
    ("balloon", None): "UpdateBalloon",
    ("drives", None): "UpdateBlockDevice",
    ("machine-config", None): "UpdateMachineConfiguration",
    ("mmds", None): "PatchMMDS",
    ("network-interfaces", None): "UpdateNetworkInterface",
    ("pmem", None): "UpdatePmemDevice",
    ("vm", None): "vm-state",
    ("hotplug", "memory"): "UpdateMemoryHotplugSize",
}
_ACTIONS = {"InstanceStart": "StartMicroVm", "SendCtrlAltDel": "SendCtrlAltDel", "FlushMetrics": "FlushMetrics"}
_ID_IN_BODY = {"drives": "drive_id", "network-interfaces": "iface_id", "pmem": "id"}


@dataclass(frozen=True)
class Action:
    """A request the API server accepted: what the VMM is asked to do."""

    name: str
    body: Any = None
    resource_id: str | None = None
    deprecated: bool = False


def _invalid_path(method: str, first: str) -> Fault:
    return Fault(f"Invalid request method and/or path: {method} {first}.")


def _tokens(path: str) -> list[str]:
    """Rust's ``trim_start_matches('/').split_terminator('/')``."""
    trimmed = path.lstrip("/")
    if not trimmed:
        return []
    parts = trimmed.split("/")
    return parts[:-1] if parts[-1] == "" else parts


def _table_lookup(table: dict[tuple[str, str | None], str], first: str, second: str | None) -> str | None:
    return table.get((first, second)) or table.get((first, None))


def _checked_id(token: str | None) -> str:
    if not token:
        raise Fault("The ID cannot be empty.")
    if not all(char == "_" or char.isalnum() for char in token):
        raise Fault("API Resource IDs can only contain alphanumeric characters and underscores.")
    return token


def route(spec: Spec, method: str, path: str, body: bytes | None) -> Action:
    """The action ``method path`` (with ``body``, ``None`` if there is none) asks for.

    Raises:
        Fault: Firecracker's API server refuses the request (``400``).
    """
    tokens = _tokens(path)
    first = tokens[0] if tokens else ""
    second = tokens[1] if len(tokens) > 1 else None
    table = {"GET": _GET, "PUT": _PUT, "PATCH": _PATCH}.get(method, {})
    name = _table_lookup(table, first, second)
    if method == "GET" and body is not None:
        raise Fault("GET request cannot have a body.")
    if method == "DELETE" and body is not None:
        raise Fault("Empty Delete request.")  # sic: Firecracker's words for a DELETE with a body
    if method in ("PUT", "PATCH") and body is None and not (method == "PATCH" and first == "balloon"):
        raise Fault(f"Empty {method} request.")
    if name is None:
        raise _invalid_path(method, first)
    resource_id = _checked_id(second) if first in _ID_IN_BODY else None
    operation = spec.operation(method, "/" + "/".join(tokens))
    if operation is None:
        raise _invalid_path(method, first)
    if body is None:
        return Action(name, None, resource_id)
    return _with_body(spec, method, name, operation.body, first, resource_id, body)


def _with_body(
    spec: Spec, method: str, name: str, definition: str | None, first: str, resource_id: str | None, raw: bytes
) -> Action:
    try:
        value = parse_json(raw)
        if definition is not None:
            spec.check(definition, value, partial=(method, first) == ("PATCH", "machine-config"))
        mac = value.get("guest_mac") if (method, first) == ("PUT", "network-interfaces") else None
        if isinstance(mac, str) and not _MAC.fullmatch(mac):
            raise BodyError("The provided MAC address is invalid.", "other", "guest_mac")
    except BodyError as exc:
        raise _body_fault(definition, exc) from None
    if resource_id is not None and value.get(_ID_IN_BODY[first]) != resource_id:
        if first == "drives":
            raise Fault("The id from the path does not match the id from the body!")
        raise Fault(
            f"The id from the path [{resource_id}] does not match the id from the body [{value[_ID_IN_BODY[first]]}]!"
        )
    if name == "actions":
        name = _ACTIONS[value["action_type"]]
    if (method, first) == ("PATCH", "machine-config") and not value:
        raise Fault("Empty PATCH request.")
    if (method, first) == ("PUT", "machine-config"):  # a whole MachineConfig: serde's defaults fill the rest
        value = {"smt": False, "track_dirty_pages": False, "huge_pages": "None", **value}
    deprecated = (first == "vsock" and "vsock_id" in value) or (first == "machine-config" and "cpu_template" in value)
    return Action(name, value, resource_id, deprecated)


def _body_fault(definition: str | None, exc: BodyError) -> Fault:
    """A body refusal; a range the VMM checks itself gets the VMM's words, as serde lets it through."""
    if exc.kind == "range" and isinstance(exc.value, int) and not isinstance(exc.value, bool):
        if (definition, exc.field) == ("MachineConfiguration", "vcpu_count") and 0 <= exc.value <= 255:
            return Fault(
                "Machine config error: The number of vCPUs must be greater than 0, less than 32 and must be 1 or "
                "an even number if SMT is enabled."
            )
        if (definition, exc.field) == ("NetworkInterface", "mtu") and 0 <= exc.value <= 65535:
            return Fault(
                f"Network config error: Could not create the network device: MTU {exc.value} is out of range "
                "[68, 65535]"
            )
    text = str(exc)
    return Fault(f"{_SERDE}{text}" + ("" if text.endswith(".") else "."))
