"""Firecracker's REST API on its Unix socket: the calls that configure, boot and stop one microVM.

The bodies follow Firecracker's Swagger definition (``firecracker.yaml``: ``MachineConfiguration``,
``BootSource``, ``Drive``, ``NetworkInterface``, ``Vsock``, ``InstanceActionInfo``); the test
suite's stand-in validates every one against that file. Success is ``204 No Content`` (or
``200`` with JSON for a ``GET``); a refusal is ``400`` with ``{"fault_message": ...}``, which
becomes ``ProviderUnavailable`` quoting the fault. A new connection per call: a VM is
configured with a handful of calls, once.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from runtime.errors import ProviderUnavailable
from runtime.providers.firecracker.vsock import connect_unix

__all__ = ["FirecrackerApi"]

_TIMEOUT_S = 10.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            connect_unix(sock, Path(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class FirecrackerApi:
    """One Firecracker process's API socket.

    Args:
        socket_path: The ``--api-sock`` the process was started with.
        timeout_s: Per call.
    """

    def __init__(self, socket_path: Path, timeout_s: float = _TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self._timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call; the decoded JSON answer of a ``GET`` (``None`` for ``204``).

        Raises:
            ProviderUnavailable: The socket is not there or Firecracker refused the call.
        """
        connection = _UnixConnection(str(self.socket_path), self._timeout_s)
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ProviderUnavailable(
                f"firecracker's API at {self.socket_path} did not answer {method} {path}: {exc}"
            ) from None
        finally:
            connection.close()
        if response.status == 204:
            return None
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = None
        if 200 <= response.status < 300:
            return answer
        fault = answer.get("fault_message") if isinstance(answer, dict) else data[:200].decode(errors="replace")
        raise ProviderUnavailable(f"firecracker refused {method} {path} ({response.status}): {fault}")

    # ------------------------------------------------------------------ the calls a workspace needs

    def describe(self) -> dict[str, Any]:
        """``GET /``: ``{"id", "state", "vmm_version", "app_name"}``."""
        answer: dict[str, Any] = self.request("GET", "/")
        return answer

    def machine_config(self, vcpus: int, memory_mib: int) -> None:
        """``PUT /machine-config``."""
        self.request("PUT", "/machine-config", {"vcpu_count": vcpus, "mem_size_mib": memory_mib, "smt": False})

    def boot_source(self, kernel: Path, boot_args: str, initrd: Path | None) -> None:
        """``PUT /boot-source``."""
        body: dict[str, Any] = {"kernel_image_path": str(kernel), "boot_args": boot_args}
        if initrd is not None:
            body["initrd_path"] = str(initrd)
        self.request("PUT", "/boot-source", body)

    def drive(self, drive_id: str, path: Path, *, root: bool, read_only: bool) -> None:
        """``PUT /drives/{drive_id}``."""
        self.request(
            "PUT",
            f"/drives/{drive_id}",
            {"drive_id": drive_id, "path_on_host": str(path), "is_root_device": root, "is_read_only": read_only},
        )

    def network_interface(self, iface_id: str, tap: str, mac: str) -> None:
        """``PUT /network-interfaces/{iface_id}``."""
        self.request(
            "PUT", f"/network-interfaces/{iface_id}", {"iface_id": iface_id, "host_dev_name": tap, "guest_mac": mac}
        )

    def vsock(self, guest_cid: int, uds_path: Path) -> None:
        """``PUT /vsock``: host-initiated connections go through ``uds_path``."""
        self.request("PUT", "/vsock", {"guest_cid": guest_cid, "uds_path": str(uds_path)})

    def action(self, action_type: str) -> None:
        """``PUT /actions``: ``InstanceStart``, ``SendCtrlAltDel`` or ``FlushMetrics``."""
        self.request("PUT", "/actions", {"action_type": action_type})
