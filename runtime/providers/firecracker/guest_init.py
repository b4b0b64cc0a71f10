#!/usr/bin/python3 -IS
"""The guest's PID 1 in a Firecracker workspace: ``/sbin/workspace-init`` in every rootfs.

Standard library only, one file: ``rootfs`` copies it into the root filesystem built from
the workspace's image, and the kernel (or the initrd's ``switch_root``) runs it as init.
It needs ``python3`` in the image, as the agent does.

What it does, in order:

1. Mounts ``/proc``, ``/sys``, ``/dev`` (unless already a mount) and a tmpfs on ``/run``.
2. Mounts the data drive (``/dev/vdb``, ext4) on ``/run/data`` and reads the workspace's
   settings from ``/.agent-workspaces/guest.json`` on it (written by the provider).
3. Lays an overlay over the read-only root, its upper layer on the data drive, and
   chroots into it: every write - ``/workspace``, ``apt-get install``, ``/tmp`` - lands on
   the data drive, whose size is the workspace's disk limit (a real quota).
4. Sets the hostname, brings up ``lo`` and ``eth0`` (address, route, resolv.conf) from
   the settings with ``ioctl`` (images rarely carry ``ip``).
5. Listens on the vsock port and, for each connection, starts the workspace agent
   (``agent_argv``) with the connection as its stdin and stdout - the same agent, frames
   and source-over-stdin start as a Docker workspace's ``docker exec`` channel.
6. Reaps every orphan (PID 1's duty); on ``SIGINT`` - what the kernel sends init on
   Ctrl-Alt-Del once ``reboot(CAD_OFF)`` is set, i.e. Firecracker's ``SendCtrlAltDel`` -
   ends every process, syncs and reboots, which ends the Firecracker process.

``WORKSPACE_INIT_VSOCK=unix`` (set only by the test suite's stand-in for Firecracker, which
cannot give a process a vsock device) makes it listen on ``/run/vsock/<port>`` instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

__all__ = ["main"]

DATA_DEVICE = "/dev/vdb"
DATA_MOUNT = "/run/data"
NEW_ROOT = "/run/root"
SETTINGS = ".agent-workspaces/guest.json"
WORKSPACE = "/workspace"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_GRACE_S = 2.0

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
REBOOT_CAD_OFF, REBOOT_RESTART = 0, 0x01234567
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK, SIOCADDRT = 0x8913, 0x8914, 0x8916, 0x891C, 0x890B
IFF_UP, RTF_UP, RTF_GATEWAY = 0x1, 0x1, 0x2

_libc = ctypes.CDLL(None, use_errno=True)


def log(message: str) -> None:
    """One line on the console (the VM's serial port, which Firecracker logs)."""
    with contextlib.suppress(OSError):
        sys.stdout.write(f"workspace-init: {message}\n")
        sys.stdout.flush()


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str, target: str, fstype: str = "", flags: int = 0, data: str = "") -> None:
    """``mount(2)``; ``OSError`` naming the target when it fails."""
    os.makedirs(target, exist_ok=True)
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode() or None, flags, data.encode() or None),
        f"mount {fstype or source} on {target}",
    )


def _mount_system(root: str, dev_from: str | None) -> None:
    """``/proc``, ``/sys``, ``/dev`` and ``/run`` under ``root``; ``/dev`` bound from ``dev_from`` if given."""
    if not os.path.ismount(f"{root}/proc"):
        mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if not os.path.ismount(f"{root}/sys"):
        mount("sysfs", f"{root}/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if dev_from is not None:
        mount(dev_from, f"{root}/dev", "", MS_BIND | MS_REC)
    elif not os.path.ismount(f"{root}/dev"):  # the stand-in for Firecracker mounts its own /dev
        mount("devtmpfs", f"{root}/dev", "devtmpfs", MS_NOSUID, "mode=0755")
    if not os.path.ismount(f"{root}/dev/pts"):
        with contextlib.suppress(OSError):  # a console without ptys still serves the agent
            mount("devpts", f"{root}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620")
    mount("tmpfs", f"{root}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")


def enter_workspace_root() -> dict[str, Any]:
    """Mount everything, chroot into the overlay on the data drive; return the settings."""
    with contextlib.suppress(OSError):  # the host's propagation must not see the guest's mounts
        mount("none", "/", "", MS_REC | MS_PRIVATE)
    _mount_system("", None)
    mount(DATA_DEVICE, DATA_MOUNT, "ext4", MS_NOSUID | MS_NODEV)
    with open(os.path.join(DATA_MOUNT, SETTINGS), encoding="utf-8") as file:
        settings: dict[str, Any] = json.load(file)
    upper, work = f"{DATA_MOUNT}/root/upper", f"{DATA_MOUNT}/root/work"
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    mount("overlay", NEW_ROOT, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")
    _mount_system(NEW_ROOT, "/dev")
    os.chroot(NEW_ROOT)
    os.chdir("/")
    os.makedirs(WORKSPACE, exist_ok=True)
    os.chmod("/tmp", 0o1777)
    return settings


# ---------------------------------------------------------------------- network


def _sockaddr(address: str) -> bytes:
    return struct.pack("@HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def _ifreq(name: str, payload: bytes) -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(24, b"\0")


def _link_up(sock: socket.socket, name: str) -> None:
    flags = struct.unpack_from("@h", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name, b"")), 16)[0]
    fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("@h", flags | IFF_UP)))


def _netmask(prefix: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))


def configure_network(settings: dict[str, Any]) -> None:
    """``lo`` up; ``eth0`` addressed and routed as ``settings["network"]`` says; resolv.conf."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _link_up(sock, "lo")
        network = settings.get("network")
        if not network:
            return
        if not os.path.exists("/sys/class/net/eth0"):
            log("no eth0: the workspace has no network")
            return
        fcntl.ioctl(sock, SIOCSIFADDR, _ifreq("eth0", _sockaddr(network["address"])))
        fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq("eth0", _sockaddr(_netmask(int(network["prefix"])))))
        _link_up(sock, "eth0")
        any_address = _sockaddr("0.0.0.0")
        route = struct.pack(
            "@L16s16s16sHhLPhPLLH6x",
            0,
            any_address,
            _sockaddr(network["gateway"]),
            any_address,
            RTF_UP | RTF_GATEWAY,
            0,
            0,
            0,  # rt_pad4
            0,  # metric
            0,  # rt_dev: any device that reaches the gateway
            0,
            0,
            0,
        )
        with contextlib.suppress(FileExistsError):
            fcntl.ioctl(sock, SIOCADDRT, route)
    servers = network.get("nameservers") or []
    with contextlib.suppress(OSError), open("/etc/resolv.conf", "w", encoding="ascii") as file:
        file.writelines(f"nameserver {server}\n" for server in servers)


def set_hostname(name: str) -> None:
    """The kernel's hostname and ``/etc/hosts``' entry for it."""
    socket.sethostname(name)
    with contextlib.suppress(OSError), open("/etc/hosts", "a", encoding="ascii") as file:
        file.write(f"127.0.1.1\t{name}\n")


# ---------------------------------------------------------------------- agents


def listen(port: int) -> socket.socket:
    """The socket agents are reached on: vsock in a VM, a Unix socket under the stand-in."""
    if os.environ.get("WORKSPACE_INIT_VSOCK") == "unix":
        os.makedirs("/run/vsock", exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(f"/run/vsock/{port}")
    else:
        listener = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        listener.bind((socket.VMADDR_CID_ANY, port))
    listener.listen(64)
    return listener


def _program(name: str, env: dict[str, str]) -> str:
    if "/" in name:
        return name
    for directory in env.get("PATH", PATH).split(":"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(errno.ENOENT, f"{name} is not on PATH", name)


def agent_env(settings: dict[str, Any]) -> dict[str, str]:
    """What the agent (and so every command) starts with: a login-like base, then the workspace's env."""
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "HOSTNAME": str(settings.get("hostname", ""))}
    env.update({str(key): str(value) for key, value in (settings.get("env") or {}).items()})
    return env


def start_agent(connection: socket.socket, argv: list[str], env: dict[str, str]) -> int:
    """Fork the agent on ``connection``; return its pid (the connection is closed here)."""
    program = _program(argv[0], env)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only execs
        try:
            os.setsid()
            os.chdir(WORKSPACE)
            fd = connection.fileno()
            os.dup2(fd, 0)
            os.dup2(fd, 1)
            os.execve(program, argv, env)
        finally:
            os._exit(127)
    connection.close()
    return pid


def reap() -> None:
    """Collect every child that ended (orphans of the whole guest end up here)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def shut_down() -> None:
    """End every process, sync and reboot (Firecracker exits when its guest reboots)."""
    log("stopping")
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)
    reap()
    os.sync()
    _libc.reboot(REBOOT_RESTART)
    os._exit(0)  # reboot refused (not PID 1 of anything): end anyway


def serve(listener: socket.socket, argv: list[str], env: dict[str, str]) -> None:
    """Start an agent per connection until ``SIGINT``; reap children as they end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[bool] = []
    signal.signal(signal.SIGINT, lambda _signum, _frame: stopping.append(True))
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)  # handled: wakes the loop
    while not stopping:
        readable, _, _ = select.select([listener.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
        reap()
        if listener.fileno() in readable:
            try:
                connection, _ = listener.accept()
            except OSError as exc:
                log(f"accept failed: {exc}")
                continue
            try:
                start_agent(connection, argv, env)
            except OSError as exc:
                log(f"the agent did not start: {exc}")
                connection.close()
    shut_down()


def main() -> None:
    """Bring the workspace up and serve its agents (never returns)."""
    os.umask(0o022)
    _libc.reboot(REBOOT_CAD_OFF)  # Ctrl-Alt-Del becomes SIGINT to us; refused in a PID namespace
    try:
        settings = enter_workspace_root()
        set_hostname(str(settings.get("hostname") or settings["workspace_id"]))
        configure_network(settings)
        listener = listen(int(settings["vsock_port"]))
    except (OSError, ValueError, KeyError, struct.error) as exc:
        log(f"the workspace could not start: {exc}")
        os.sync()
        _libc.reboot(REBOOT_RESTART)
        sys.exit(1)
    log(f"workspace {settings['workspace_id']} ready: agents on vsock port {settings['vsock_port']}")
    serve(listener, [str(part) for part in settings["agent_argv"]], agent_env(settings))


if __name__ == "__main__":
    main()
