"""``workspaces firecracker-manager``: the VM-owning side as a service, and the runtime's client of it.

Running VMs needs root (KVM, taps, NAT, cgroups); the runtime need not. The manager owns
``Machines`` and serves it on a Unix socket (``FIRECRACKER_MANAGER_SOCKET``, mode 0660, so
the runtime's user needs the socket's group); ``ManagerClient`` offers the runtime the same
calls. One request per connection, one JSON line each way:

- request ``{"op": str, "args": map}``;
- answer ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": {"code", "message", "retryable"}}`` with the wire protocol's codes;
- ``connect`` answers with the connected vsock stream itself: its descriptor rides on the
  answer line (``SCM_RIGHTS``), so the runtime needs no access to the VMs' files.

Ops: ``probe``, ``create`` (``spec``), ``destroy`` and ``connect`` (``workspace_id``, ``port``),
``list``, ``usage`` and ``disk_usage`` (``workspace_ids``).
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

import msgspec

from runtime.errors import BadRequest, InternalError, ProviderUnavailable, WorkspaceError, error_for_code
from runtime.messages import ErrorBody, ResourceUsage
from runtime.providers.firecracker.machines import Machines
from runtime.providers.firecracker.records import MachineSpec, MachineState
from runtime.providers.firecracker.vsock import connect_unix

__all__ = ["ManagerClient", "ManagerServer"]

log = logging.getLogger(__name__)

_MAX_LINE = 1 << 20
_CREATE_TIMEOUT_S = 600.0  # the first create of an image builds its root filesystem
_TIMEOUT_S = 30.0


class _Request(msgspec.Struct, frozen=True):
    op: str
    args: dict[str, Any] = {}


_request = msgspec.json.Decoder(_Request)
_encode = msgspec.json.Encoder().encode


def _read_line(sock: socket.socket, fds: list[int] | None = None) -> bytes:
    """One line; descriptors that come with it go into ``fds`` as they arrive (so none is lost)."""
    data = b""
    while not data.endswith(b"\n"):
        if fds is not None:
            chunk, received, _flags, _address = socket.recv_fds(sock, 65536, 1)
            fds.extend(received)
        else:
            chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_LINE:
            raise BadRequest("a message to or from the firecracker manager is longer than 1 MiB")
    return data


class _Handler(socketserver.BaseRequestHandler):
    server: ManagerServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(_TIMEOUT_S)  # a client that never finishes its line does not keep a thread
        fd: int | None = None
        try:
            line = _read_line(sock)
            request = _request.decode(line)
            result, stream = self.server.dispatch(request)
            answer: dict[str, Any] = {"ok": True, "result": result}
            if stream is not None:
                fd = stream.detach()
        except msgspec.DecodeError as exc:
            answer = _failure(BadRequest(f"not a manager request: {exc}"))
        except WorkspaceError as exc:
            answer = _failure(exc)
        except Exception as exc:
            log.exception("the firecracker manager failed a request")
            answer = _failure(InternalError(f"the firecracker manager failed: {exc}"))
        data = _encode(answer) + b"\n"
        with contextlib.suppress(OSError):
            if fd is not None:
                socket.send_fds(sock, [data], [fd])
            else:
                sock.sendall(data)
        if fd is not None:
            os.close(fd)


def _failure(exc: WorkspaceError) -> dict[str, Any]:
    return {"ok": False, "error": ErrorBody(exc.code, exc.message, exc.retryable)}


class ManagerServer(socketserver.ThreadingUnixStreamServer):
    """``Machines`` served on a Unix socket.

    Args:
        path: The socket (a stale file there is replaced).
        machines: What it serves.
        group: The group that may use the socket (``None``: root only).
    """

    daemon_threads = True
    request_queue_size = 128  # a busy runtime opens many connections at once (one per call)

    def __init__(self, path: Path, machines: Machines, group: str | None = None) -> None:
        self.machines = machines
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        super().__init__(str(path), _Handler)
        self.path = path
        os.chmod(path, 0o660 if group else 0o600)
        if group:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        self._thread: threading.Thread | None = None
        self._started = False

    def start(self) -> ManagerServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="firecracker-manager", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket; the VMs keep running."""
        self.shutdown()
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def dispatch(self, request: _Request) -> tuple[Any, socket.socket | None]:
        """One request's result, and the stream to hand over for ``connect``."""
        machines, args = self.machines, request.args
        match request.op:
            case "probe":
                problems = machines.probe()
                if not problems and not self._started:  # the host's bridge and NAT, once it can have them
                    machines.start()
                    self._started = True
                return {"problems": problems, "version": machines.version()}, None
            case "create":
                machines.create(msgspec.convert(args.get("spec"), MachineSpec))
                return {}, None
            case "destroy":
                machines.destroy(_text(args, "workspace_id"))
                return {}, None
            case "list":
                return msgspec.to_builtins(machines.states()), None
            case "connect":
                return {}, machines.connect(_text(args, "workspace_id"), _port(args))
            case "usage":
                usage = machines.usage(_ids(args))
                return {key: [value.cpu_seconds, value.memory_bytes] for key, value in usage.items()}, None
            case "disk_usage":
                return machines.disk_usage(_ids(args)), None
        raise BadRequest(f"the firecracker manager has no op {request.op[:40]!r}")


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _port(args: dict[str, Any]) -> int:
    value = args.get("port")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 1 << 32:
        raise BadRequest("port must be an integer from 1 to 2^32-1")
    return value


def _ids(args: dict[str, Any]) -> list[str]:
    value = args.get("workspace_ids")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest("workspace_ids must be a list of strings")
    return value


class ManagerClient:
    """The runtime's side of the manager: the calls of ``Machines``, over its socket.

    Args:
        path: ``FIRECRACKER_MANAGER_SOCKET``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: str | None = None

    def _call(self, op: str, args: dict[str, Any], timeout_s: float = _TIMEOUT_S) -> tuple[Any, list[int]]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        fds: list[int] = []
        try:
            connect_unix(sock, self.path)
            sock.sendall(_encode({"op": op, "args": args}) + b"\n")
            line = _read_line(sock, fds if op == "connect" else None)
        except (OSError, BadRequest) as exc:
            for fd in fds:
                os.close(fd)
            raise ProviderUnavailable(f"the firecracker manager at {self.path} is not reachable: {exc}") from None
        finally:
            sock.close()
        try:
            answer = msgspec.json.decode(line)
        except msgspec.DecodeError:
            for fd in fds:
                os.close(fd)
            raise ProviderUnavailable(f"the firecracker manager at {self.path} answered {line[:80]!r}") from None
        if not answer.get("ok"):
            try:
                error = msgspec.convert(answer.get("error"), ErrorBody)
            except msgspec.ValidationError:
                error = ErrorBody("internal", f"the firecracker manager answered {line[:80]!r}", False)
            raise error_for_code(error.code, error.message, error.retryable)
        return answer.get("result"), fds

    def probe(self) -> list[str]:
        """What the manager says is missing (its unreachability included)."""
        try:
            result, _ = self._call("probe", {})
        except WorkspaceError as exc:
            return [exc.message]
        self._version = None if result["version"] is None else str(result["version"])
        return [str(problem) for problem in result["problems"]]

    def version(self) -> str | None:
        """The manager's ``firecracker --version``, as its last probe said (asked for if none was made)."""
        if self._version is None:
            self.probe()
        return self._version

    def start(self) -> None:
        """Nothing: the manager readied the host when it started."""

    def create(self, spec: MachineSpec) -> None:
        """``Machines.create`` in the manager."""
        self._call("create", {"spec": msgspec.to_builtins(spec)}, _CREATE_TIMEOUT_S)

    def destroy(self, workspace_id: str) -> None:
        """``Machines.destroy`` in the manager."""
        self._call("destroy", {"workspace_id": workspace_id}, _CREATE_TIMEOUT_S)

    def states(self) -> list[MachineState]:
        """``Machines.states`` in the manager."""
        result, _ = self._call("list", {})
        return msgspec.convert(result, list[MachineState])

    def connect(self, workspace_id: str, port: int) -> socket.socket:
        """A stream to ``port`` in the VM, opened by the manager and handed over."""
        _, fds = self._call("connect", {"workspace_id": workspace_id, "port": port})
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise ProviderUnavailable("the firecracker manager did not hand over the vsock stream")
        return socket.socket(fileno=fds[0])

    def usage(self, workspace_ids: list[str]) -> dict[str, ResourceUsage]:
        """``Machines.usage`` in the manager."""
        result, _ = self._call("usage", {"workspace_ids": workspace_ids})
        return {key: ResourceUsage(float(value[0]), int(value[1])) for key, value in result.items()}

    def disk_usage(self, workspace_ids: list[str]) -> dict[str, int]:
        """``Machines.disk_usage`` in the manager."""
        result, _ = self._call("disk_usage", {"workspace_ids": workspace_ids})
        return {key: int(value) for key, value in result.items()}
