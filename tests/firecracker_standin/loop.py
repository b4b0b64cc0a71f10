"""Loop devices for the guest's drives, cleared by the kernel as soon as nobody holds them.

Each drive's backing file (the descriptor Firecracker opened at ``PUT /drives``) is bound
to a free loop device with ``LOOP_CONFIGURE`` and ``LO_FLAGS_AUTOCLEAR``: the device
detaches itself when its last user goes (the stand-in's descriptor and the guest's
mounts), so a stand-in killed with ``SIGKILL`` leaves none behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

__all__ = ["LoopDevice", "attach"]

_LOOP_CONFIGURE = 0x4C0A
_LOOP_CTL_GET_FREE = 0x4C82
_LO_FLAGS_READ_ONLY = 1
_LO_FLAGS_AUTOCLEAR = 4
_NAME_SIZE = 64
_ATTEMPTS = 64


@dataclass
class LoopDevice:
    """A bound loop device, held open (closing ``fd`` lets the kernel clear it)."""

    path: str
    fd: int
    major: int
    minor: int

    def close(self) -> None:
        """Let go of the device: it detaches once the guest's mounts are gone too."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _config(backing_fd: int, read_only: bool, name: str) -> bytes:
    flags = _LO_FLAGS_AUTOCLEAR | (_LO_FLAGS_READ_ONLY if read_only else 0)
    file_name = os.fsencode(name)[: _NAME_SIZE - 1]
    # struct loop_info64: 5 u64, 4 u32 (flags last), name[64], crypt_name[64], key[32], 2 u64
    info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, flags, file_name, b"", b"", 0, 0)
    return struct.pack("=II", backing_fd, 0) + info + bytes(8 * 8)


def attach(backing_fd: int, *, read_only: bool, name: str) -> LoopDevice:
    """Bind ``backing_fd`` to a free loop device.

    Raises:
        OSError: No loop device could be had (not root, no loop driver...).
    """
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(_ATTEMPTS):
            number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
            path = f"/dev/loop{number}"
            fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, _config(backing_fd, read_only, name))
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # another process took it between GET_FREE and here
                    continue
                raise
            device = os.fstat(fd).st_rdev
            return LoopDevice(path, fd, os.major(device), os.minor(device))
    finally:
        os.close(control)
    raise OSError(errno.EBUSY, "no free loop device")
