"""A faithful local stand-in for the ``firecracker`` binary, for tests: no real microVM can boot here.

``BIN`` is run exactly as Firecracker is (``FIRECRACKER_BIN``): ``firecracker --api-sock PATH
[--id ID]`` serves Firecracker's REST API on ``PATH``, checking every request against
Firecracker's Swagger spec (``../shared/specs/firecracker-api.yaml`` beside the project) and
the order Firecracker enforces (pre-boot calls, ``InstanceStart``, runtime calls), and
answering in its words (``204``, or ``400`` with ``{"fault_message": ...}``).
``InstanceStart`` "boots" the guest: the drives become loop devices (``vda`` the root,
then the others), the root is mounted read-only and the kernel command line's ``init``
runs as PID 1 of new PID, mount, network, UTS and IPC namespaces, with a ``/dev`` of its
own and ``WORKSPACE_INIT_VSOCK=unix`` in its environment. The vsock device's host side is
Firecracker's: ``CONNECT <port>\\n`` on ``uds_path`` is answered ``OK <host port>\\n`` and
spliced to the guest's ``/run/vsock/<port>``. ``SendCtrlAltDel`` is ``SIGINT`` to init;
when init reboots or ends, the process exits 0; killed, it takes the guest with it.

Modules: ``cli`` (the process, its exits, the request log), ``arguments``, ``http``
(micro_http), ``spec``, ``routes`` (the API server's parsing), ``vmm`` (pre/post-boot
rules), ``resources`` (each device's checks), ``cmdline`` (the kernel's reading of
``boot_args``), ``boot`` and ``guest`` (the guest's namespaces and init), ``loop``, ``vsock``;
``net`` (when present) gives the guest its network interfaces, see ``boot``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["BIN", "REQUEST_LOG_SUFFIX", "read_requests", "request_log"]

BIN = Path(__file__).resolve().parent / "bin" / "firecracker"
"""The executable to use as ``FIRECRACKER_BIN``."""

REQUEST_LOG_SUFFIX = ".requests.jsonl"
"""Appended to ``--api-sock`` to name the file every API request is recorded in."""


def request_log(api_sock: Path | str) -> Path:
    """Where the stand-in serving ``api_sock`` records its requests."""
    return Path(f"{api_sock}{REQUEST_LOG_SUFFIX}")


def read_requests(api_sock: Path | str) -> list[dict[str, Any]]:
    """The requests recorded so far, oldest first (``[]`` before the first one)."""
    path = request_log(api_sock)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
