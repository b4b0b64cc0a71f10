"""The stand-in's guest "kernel": run the guest's init as PID 1 of new namespaces (a process of its own).

Started by the stand-in (``boot``) as ``python -I -S guest.py '<json plan>'``, standard
library only, as root. It plays the part of the guest kernel from the moment its root
device exists:

1. ``PR_SET_PDEATHSIG``: it dies with the stand-in (and PID 1 dies with it, and with PID 1
   every process of the guest: nothing outlives a ``SIGKILL`` of the stand-in).
2. New mount, PID, network, UTS and IPC namespaces; every mount private.
3. PID 1 (its child): mounts the root drive on a staging tmpfs, a tmpfs ``/dev`` holding
   ``null zero full random urandom tty ptmx``, ``pts`` (devpts) and ``vda vdb ...`` (the
   loop devices' numbers, root first), sets the hostname ``(none)``, says ``ready`` and
   waits for ``go`` (the stand-in gives the namespace its network interfaces meanwhile),
   makes the root drive its root (``pivot_root``) and execs init as Linux would.
4. When PID 1 ends: ``reboot(RESTART)`` in a PID namespace kills init with ``SIGHUP``
   (``SIGINT`` for power-off/halt), which Linux would turn into a reset Firecracker exits
   on; any other end is Linux's "Attempted to kill init!" panic, after which the kernel
   reboots in ``panic=`` seconds, or hangs forever with ``panic=0``.

Status lines to the stand-in (``status_fd``): ``pid <host pid of init>``, ``ready``, then
``started`` (init was exec'd) or ``panic <message>``. Kernel messages go to the console
(stdout) only when the command line makes the serial port the console.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import stat
import sys
import time
from typing import Any

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 8, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
SYS_PIVOT_ROOT = 155  # x86_64
STAGE = "/tmp"
ROOT = "/tmp/root"
DEFAULT_INITS = ("/sbin/init", "/etc/init", "/bin/init", "/bin/sh")
CHAR_DEVICES = (
    ("null", 1, 3, 0o666),
    ("zero", 1, 5, 0o666),
    ("full", 1, 7, 0o666),
    ("random", 1, 8, 0o666),
    ("urandom", 1, 9, 0o666),
    ("tty", 5, 0, 0o666),
    ("ptmx", 5, 2, 0o666),
)

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() or None),
        f"mount {source} on {target}",
    )


class Console:
    """The guest's console: the stand-in's stdout when the serial port is the console, else nowhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._boot = time.monotonic()

    def kernel(self, message: str) -> None:
        """A kernel message, stamped with the time since "boot" as ``printk`` does."""
        if self.enabled:
            with contextlib.suppress(OSError):
                os.write(1, f"[{time.monotonic() - self._boot:12.6f}] {message}\n".encode())


def mount_root(plan: dict[str, Any], console: Console) -> None:
    """The root drive on ``ROOT``, as the kernel's ``mount_root`` would; ``RuntimeError`` = panic."""
    root = plan["root"]
    if root is None:
        console.kernel(f'VFS: Cannot open root device "{plan["root_name"]}" or unknown-block(0,0): error -6')
        raise RuntimeError("VFS: Unable to mount root fs on unknown-block(0,0)")
    numbers = f"{root['major']},{root['minor']}"
    flags = MS_RDONLY if root["readonly"] else 0
    failures = []
    for fstype in root["fstypes"]:
        try:
            mount(root["device"], ROOT, fstype, flags)
        except OSError as exc:
            failures.append(exc)
            continue
        mode = "readonly" if root["readonly"] else "read-write"
        console.kernel(f"VFS: Mounted root ({fstype} filesystem) {mode} on device {numbers.replace(',', ':')}.")
        return
    reason = f"error -{failures[-1].errno}" if failures else "no file system type"
    console.kernel(f'VFS: Cannot open root device "{plan["root_name"]}" or unknown-block({numbers}): {reason}')
    raise RuntimeError(f"VFS: Unable to mount root fs on unknown-block({numbers})")


def populate_dev(plan: dict[str, Any]) -> None:
    """A tmpfs ``/dev`` under the root with the nodes a VM's devtmpfs would hold."""
    dev = f"{ROOT}/dev"
    if not os.path.isdir(dev):
        return  # Linux's devtmpfs automount fails the same way on a root without /dev
    mount("dev", dev, "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name, major, minor, mode in CHAR_DEVICES:
        os.mknod(f"{dev}/{name}", mode | stat.S_IFCHR, os.makedev(major, minor))
    for device in plan["devices"]:
        os.mknod(f"{dev}/{device['name']}", 0o660 | stat.S_IFBLK, os.makedev(device["major"], device["minor"]))
    os.mkdir(f"{dev}/pts", 0o755)
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")


def enter_root() -> None:
    """Make ``ROOT`` the namespace's root: nothing of the host's file system stays reachable."""
    os.chdir(ROOT)
    if libc.syscall(SYS_PIVOT_ROOT, b".", b".") == 0:
        check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    else:  # a host whose root cannot be pivoted (initramfs): a chroot is what the contract asks anyway
        os.chroot(".")
    os.chdir("/")


def exec_init(plan: dict[str, Any], report: int) -> None:
    """Exec init as ``kernel_init`` does; return only if every candidate failed."""
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)  # ignored dispositions would survive exec
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    candidates = [plan["init"]] if plan["init"] else list(DEFAULT_INITS)
    failure = 0
    for path in candidates:
        try:
            os.execve(path, [path, *plan["argv"]], plan["env"])
        except OSError as exc:
            failure = exc.errno or errno.ENOENT
            if plan["init"]:
                os.write(report, f"panic Requested init {path} failed (error -{failure}).\n".encode())
                return
    os.write(
        report,
        b"panic No working init found.  Try passing init= option to kernel. "
        b"See Linux Documentation/admin-guide/init.rst for guidance.\n",
    )


def pid_one(plan: dict[str, Any], go: int, report: int, console: Console) -> None:
    """The guest's PID 1 until it execs init (never returns)."""
    try:
        check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        os.close(plan["status_fd"])  # init must not hold the stand-in's pipe
        os.setsid()
        os.umask(0)
        mount("standin", STAGE, "tmpfs", MS_NOSUID, "mode=0700")
        os.mkdir(ROOT, 0o755)
        mount_root(plan, console)
        populate_dev(plan)
        os.umask(0o022)
        unset = b"(none)"  # Linux's UTS_NODENAME: Firecracker sets no host name
        check(libc.sethostname(unset, len(unset)), "sethostname")
        check(libc.setdomainname(unset, len(unset)), "setdomainname")
        os.write(report, b"ready\n")
        if os.read(go, 1) != b"g":
            os._exit(0)  # the stand-in gave up on this boot
        os.close(go)
        enter_root()
        console.kernel(f"Run {plan['init'] or DEFAULT_INITS[0]} as init process")
        exec_init(plan, report)
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            os.write(report, f"panic {exc}\n".encode())
    os._exit(1)


def kernel_messages(status: int, console: Console) -> str | None:
    """What Linux prints when init ends with ``status``; the panic message if it panics."""
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGHUP:
        console.kernel("reboot: Restarting system")
        return None
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT:
        console.kernel("reboot: Power down")
        return None
    return f"Attempted to kill init! exitcode=0x{status:08x}"


def panic(message: str, plan: dict[str, Any], console: Console) -> None:
    """Linux's panic: the message, then a reboot after ``panic=`` seconds (or never)."""
    console.kernel(f"Kernel panic - not syncing: {message}")
    timeout = int(plan["panic_s"])
    if timeout > 0:
        console.kernel(f"Rebooting in {timeout} seconds..")
        time.sleep(timeout)
    elif timeout == 0:
        console.kernel(f"---[ end Kernel panic - not syncing: {message} ]---")
        while True:
            signal.pause()


def main() -> None:
    plan = json.loads(sys.argv[1])
    status = os.fdopen(plan["status_fd"], "w", buffering=1)
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != plan["parent"]:
        sys.exit(1)  # the stand-in is already gone
    console = Console(plan["console"])
    os.setsid()  # signals to the stand-in's process group do not reach the guest
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        pid_one(plan, plan["go_fd"], report_w, console)
    os.close(report_w)
    os.close(plan["go_fd"])
    status.write(f"pid {pid}\n")
    with os.fdopen(report_r, "r") as reports:
        line = reports.readline().strip()
        if line == "ready":
            status.write("ready\n")
            line = reports.readline().strip()
    # end of file without a panic: the pipe closed on exec (or PID 1 died, which the wait below tells)
    panicked = line.removeprefix("panic ") if line.startswith("panic ") else None
    status.write(f"panic {panicked}\n" if panicked else "started\n")
    status.close()
    while True:
        try:
            _, wait_status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    message = panicked or kernel_messages(wait_status, console)
    if message:
        panic(message, plan, console)
    sys.exit(0)


if __name__ == "__main__":
    main()
