"""Helpers for tests of (and with) the stand-in: run it, talk to its API, look for what it left behind.

``StandInProcess`` runs ``BIN`` as a provider would; ``ApiClient`` speaks HTTP on its API
socket (keep-alive, as Python's ``http.client``); ``vsock_connect`` does the host side of
the vsock handshake; ``build_test_rootfs`` makes an ext4 root from a Docker image with a
small test init (``TEST_INIT``) that reports what it sees and serves vsock ports;
``loop_devices_of``, ``processes_in_namespace`` and ``descendants`` find leftovers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.firecracker_standin import BIN
from tests.helpers import poll_until

__all__ = [
    "TEST_INIT",
    "ApiClient",
    "StandInProcess",
    "build_test_rootfs",
    "descendants",
    "loop_devices_of",
    "processes_in_namespace",
    "vsock_connect",
]

TEST_INIT = r'''#!/usr/bin/python3 -I
"""The stand-in tests' init: reports what it sees, serves vsock ports 52 (echo), 53 (half-close), 54 (exit 3)."""
import ctypes, json, os, signal, socket, sys, threading

libc = ctypes.CDLL(None, use_errno=True)


def say(text):
    os.write(1, f"test-init: {text}\n".encode())


def mount(source, target, fstype, data=None):
    if libc.mount(source.encode(), target.encode(), fstype.encode(), 0, data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


mount("tmpfs", "/run", "tmpfs", "mode=0755")
mount("sysfs", "/sys", "sysfs")
net = {name: open(f"/sys/class/net/{name}/address").read().strip() for name in os.listdir("/sys/class/net")}
devices = {}
for name in sorted(os.listdir("/dev")):
    info = os.lstat(f"/dev/{name}")
    devices[name] = [oct(info.st_mode), os.major(info.st_rdev), os.minor(info.st_rdev)]
data = None
if os.path.exists("/dev/vdb"):
    os.makedirs("/run/data")
    mount("/dev/vdb", "/run/data", "ext4")
    with open("/run/data/hello", "w") as file:
        file.write("written by the guest\n")
    libc.umount(b"/run/data")
    data = "written"
say("report " + json.dumps({
    "pid": os.getpid(), "argv": sys.argv, "env": dict(os.environ), "hostname": socket.gethostname(),
    "dev": devices, "data": data, "net": net, "root_read_only": bool(os.statvfs("/").f_flag & 1), "sid": os.getsid(0),
}))


def serve(port, handler):
    os.makedirs("/run/vsock", exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"/run/vsock/{port}")
    listener.listen(16)

    def accept():
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=handler, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def echo(connection):
    with connection:
        while data := connection.recv(65536):
            connection.sendall(data)
    say("echo closed")


def half_close(connection):
    with connection:
        connection.sendall(b"bye")
        connection.shutdown(socket.SHUT_WR)
        got = b""
        while b"later" not in got and (data := connection.recv(65536)):
            got += data
        say(f"half-close got {got.decode()}")


def exit_3(connection):
    say("exiting with 3")
    os._exit(3)


serve(52, echo)
serve(53, half_close)
serve(54, exit_3)
stop = threading.Event()
signal.signal(signal.SIGINT, lambda *_: stop.set())
say("ready")
stop.wait()
say("SIGINT: rebooting")
libc.reboot(0x01234567)
'''


class ApiClient:
    """HTTP on a Unix socket, one kept-alive connection (``fresh=True`` opens one per call)."""

    def __init__(self, path: Path, *, fresh: bool = False) -> None:
        self.path, self.fresh = path, fresh
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        path = str(self.path)

        class Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(30)
                sock.connect(path)
                self.sock = sock

        return Connection("localhost", timeout=30)

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """``(status, decoded JSON, the text if it is not JSON, or None, headers)``; ``raw`` sends bytes as they are."""
        if self._connection is None or self.fresh:
            self.close()
            self._connection = self._connect()
        payload = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        self._connection.request(method, path, body=payload, headers=headers)
        response = self._connection.getresponse()
        data = response.read()
        try:
            answer = json.loads(data) if data else None
        except ValueError:  # micro_http's own refusals are not quite JSON (a raw newline in a string)
            answer = data.decode(errors="replace")
        return response.status, answer, dict(response.getheaders())

    def fault(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> str:
        """The ``fault_message`` of a call that must be refused with ``400``."""
        status, answer, _ = self.call(method, path, body, raw=raw)
        assert status == 400, f"{method} {path} {body!r} was answered {status} {answer!r}, not 400"
        assert isinstance(answer, dict) and isinstance(answer.get("fault_message"), str), answer
        return str(answer["fault_message"])

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The answer of a call that must succeed (``204``, or ``200`` for a ``GET``)."""
        status, answer, _ = self.call(method, path, body)
        assert status == (200 if method == "GET" else 204), f"{method} {path}: {status} {answer!r}"
        return answer

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class StandInProcess:
    """``firecracker --api-sock <dir>/api.sock --id <id>`` in ``directory``, its stdout in ``console.log``."""

    def __init__(self, directory: Path, *extra: str, instance_id: str = "standin-test") -> None:
        self.directory = directory
        self.api_sock = directory / "api.sock"
        self.console = directory / "console.log"
        with open(self.console, "ab") as output:
            self.process = subprocess.Popen(
                [str(BIN), "--api-sock", "api.sock", "--id", instance_id, *extra],
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        poll_until(lambda: self.api_sock.exists() or self.process.poll() is not None, timeout_s=30)
        assert self.process.poll() is None, self.console_text()
        self.api = ApiClient(self.api_sock)

    def console_text(self) -> str:
        return self.console.read_text(errors="replace")

    def wait_for_console(self, text: str, timeout_s: float = 30.0) -> None:
        poll_until(lambda: text in self.console_text(), timeout_s=timeout_s)

    def exit_code(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """``SIGKILL`` (if still running) and reap."""
        self.api.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)


def vsock_connect(uds_path: Path, line: bytes, timeout_s: float = 10.0) -> tuple[socket.socket, bytes]:
    """Connect to the vsock device, send ``line``; the socket and the first line back (``b""`` if closed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    sock.connect(str(uds_path))
    sock.sendall(line)
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        answer += chunk
    return sock, answer


def build_test_rootfs(client: Any, image: str, target: Path) -> Path:
    """An ext4 root from ``image`` (``docker export``) with ``TEST_INIT`` as ``/sbin/test-init``."""
    staging = target.with_suffix(".d")
    staging.mkdir()
    container = client.containers.create(image)
    try:
        with subprocess.Popen(["tar", "-x", "-C", str(staging)], stdin=subprocess.PIPE) as tar:
            assert tar.stdin is not None
            for chunk in container.export():
                tar.stdin.write(chunk)
            tar.stdin.close()
        assert tar.returncode == 0
        init = staging / "sbin" / "test-init"
        init.write_text(TEST_INIT)
        init.chmod(0o755)
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file() and not f.is_symlink())
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-d", str(staging), "-L", "standin", str(target), f"{size * 2 // 1024 + 65536}K"],
            check=True,
        )
    finally:
        container.remove(force=True)
        shutil.rmtree(staging)
    return target


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def processes_in_namespace(namespace: str) -> list[int]:
    """Live (not zombie) processes whose PID namespace is ``namespace`` (a ``pid:[...]`` link)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if os.readlink(entry / "ns" / "pid") == namespace and stat[stat.rfind(")") + 2] != "Z":
                found.append(int(entry.name))
    return found


def loop_devices_of(*files: Path) -> list[str]:
    """Loop devices whose backing file is one of ``files``."""
    wanted = {str(path.resolve()) for path in files}
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().strip().removesuffix(" (deleted)") in wanted:
                found.append(backing.parent.parent.name)
    return found
