"""The stand-in's virtio-net device: the guest's ``eth0`` wired to a host tap, as in a microVM.

Firecracker opens the tap named in ``PUT /network-interfaces`` (``/dev/net/tun``,
``TUNSETIFF`` with ``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR``, a 12-byte ``virtio_net_hdr_v1``
per frame, no offloads until the guest's driver asks for some) and copies frames between it
and the guest's virtio queues. Here the "guest" is a process in its own network namespace,
so its NIC is a second tap, made in the host namespace and moved into the guest's as
``eth0`` with the guest's MAC, down (the guest's init configures it). Two threads copy every
frame between the two tap file descriptors, adding or stripping the virtio header on the
host tap's side.

Why not a veth pair: its host end would be an interface of the host's own IP stack, which
answers ARP for any host address (the gateway included) and routes what arrives on it,
beside the bridge: the guest would reach the host around the bridge, its isolation and the
FORWARD rules. A tap in the guest's namespace has no host end at all - only the file
descriptor - just like a VM's virtio-net.

Stdlib only (the stand-in runs it as is). Call ``attach`` once the guest's network
namespace exists and before its init looks for ``eth0``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import select
import struct
import subprocess
import threading

__all__ = ["VNET_HDR_LEN", "Closer", "attach"]

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
VNET_HDR_LEN = 12
"""``sizeof(struct virtio_net_hdr_v1)``: what Firecracker sets with ``TUNSETVNETHDRSZ``."""
_FRAME_MAX = 65536 + VNET_HDR_LEN
_GONE = (errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EBADF)
_LINK_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _open_tap(name: str, flags: int) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    except OSError as exc:
        os.close(fd)
        raise OSError(exc.errno, f"cannot open tap {name!r}: {exc.strerror}") from None
    return fd


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise OSError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


class Closer:
    """Frames pumped between a host tap and a guest's ``eth0``; ``close`` ends it.

    Attributes:
        tap_name: The host tap.
        guest_pid: The process whose network namespace holds ``eth0``.
    """

    def __init__(self, tap_name: str, guest_pid: int, host_fd: int, guest_fd: int) -> None:
        self.tap_name, self.guest_pid = tap_name, guest_pid
        self._host, self._guest = host_fd, guest_fd
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._pump, args=(host_fd, guest_fd, True), daemon=True, name=f"net-{tap_name}-rx"),
            threading.Thread(
                target=self._pump, args=(guest_fd, host_fd, False), daemon=True, name=f"net-{tap_name}-tx"
            ),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        """Whether both directions still pump (a guest namespace or a tap that vanished stops them)."""
        return all(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        """Stop the pumps and close both taps: the guest's ``eth0`` goes with its descriptor. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._stop_w, b"x")
        for thread in self._threads:
            thread.join(timeout=10)
        for fd in (self._host, self._guest, self._stop_r, self._stop_w):
            os.close(fd)

    def __enter__(self) -> Closer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pump(self, source: int, target: int, from_host: bool) -> None:
        """Copy frames ``source`` -> ``target`` until closed or either side's device is gone."""
        poller = select.poll()
        poller.register(source, select.POLLIN)
        poller.register(target, 0)  # errors and hang-ups are always reported: the other side vanishing
        poller.register(self._stop_r, select.POLLIN)
        header = b"" if from_host else bytes(VNET_HDR_LEN)
        while True:
            events = poller.poll()
            if any(fd == self._stop_r or mask & _LINK_GONE for fd, mask in events):
                return
            try:
                frame = os.read(source, _FRAME_MAX)
            except BlockingIOError:
                continue
            except OSError:
                return  # the tap is gone (e.g. the guest's namespace ended)
            if from_host:
                frame = frame[VNET_HDR_LEN:]
            if not frame:
                continue
            try:
                os.write(target, header + frame)
            except OSError as exc:
                if exc.errno in _GONE:
                    return
                # Anything else (the guest's eth0 still down, a full queue) drops the frame, as a NIC would.


def attach(tap_name: str, guest_netns_pid: int, guest_mac: str) -> Closer:
    """Open ``tap_name`` as Firecracker does and give the guest an ``eth0`` behind it.

    Args:
        tap_name: The host tap (``host_dev_name``); made, non-persistent, if it does not exist - as
            Firecracker's ``TUNSETIFF`` would.
        guest_netns_pid: A process (host pid) in the guest's network namespace.
        guest_mac: The guest NIC's MAC (``guest_mac``).

    Returns:
        The running pumps; close them when the VM ends (killing the process is as good: both
        descriptors close with it, and the guest's ``eth0`` disappears).

    Raises:
        OSError: The tap cannot be opened (missing ``/dev/net/tun``, busy, not root), or the
            guest's ``eth0`` cannot be made (the namespace is gone, ``eth0`` exists there).
    """
    host = _open_tap(tap_name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    guest = -1
    try:
        fcntl.ioctl(host, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        fcntl.ioctl(host, TUNSETOFFLOAD, 0)
        # Made here under a temporary name, then moved: a tap's netns is the opener's.
        temporary = f"fcg{secrets.token_hex(5)}"
        guest = _open_tap(temporary, IFF_TAP | IFF_NO_PI)
        _ip("link", "set", "dev", temporary, "netns", str(guest_netns_pid), "name", "eth0", "address", guest_mac)
    except BaseException:
        os.close(host)
        if guest >= 0:
            os.close(guest)
        raise
    return Closer(tap_name, guest_netns_pid, host, guest)
