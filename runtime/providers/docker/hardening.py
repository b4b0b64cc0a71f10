"""What a workspace container may do beyond its limits: capabilities, privileges, writable paths.

Docker's default capability set is wider than a workspace needs. Workspaces get only
``CAPABILITIES`` (Docker's names, without ``CAP_``), each kept for something code in a
workspace ordinarily does as root; the rest of Docker's defaults are dropped:

- ``CHOWN``: ``chown`` files (``apt``/``dpkg`` unpacking, ``useradd -m``, fixing a
  checkout's owner);
- ``DAC_OVERRIDE``: root reads and writes files whatever their mode (``apt``'s
  ``_apt``-owned cache and lists, files a build made read-only);
- ``FOWNER``: ``chmod``/``utime``/set attributes on files root does not own (``dpkg``,
  ``tar -p``, ``git`` checkouts of another user's tree);
- ``FSETID``: keep set-user/group-id bits through ``chmod``/writes (``dpkg`` installing
  ``su``/``passwd`` and the like);
- ``KILL``: signal processes of other users (root stopping a server it started as
  another user; the agent ending a command's process group);
- ``SETGID``, ``SETUID``: change identity (``apt`` drops to ``_apt`` to download,
  ``su``/``runuser``/``setpriv`` to run something as an unprivileged user);
- ``NET_BIND_SERVICE``: listen on ports below 1024 (a web server on 80).

Dropped from Docker's defaults: ``MKNOD`` (device nodes), ``NET_RAW`` (raw and packet
sockets: forged packets and ARP tricks on the bridge; ``ping`` needs it), ``SETFCAP``
(file capabilities: ``dpkg`` falls back to set-user-id for ``ping``), ``SETPCAP``,
``SYS_CHROOT`` and ``AUDIT_WRITE``. ``no-new-privileges`` means nothing a workspace runs
gains privileges by ``execve``: a set-user-id-root program run by another user stays
that user.

With ``WORKSPACE_READ_ONLY_ROOT`` the image's root filesystem is mounted read-only:
``/workspace`` (the volume) stays writable, and ``WRITABLE_PATHS`` are memory-backed
(``tmpfs``, counted against the workspace's memory limit, emptied when the container
restarts). Installing system packages (``apt-get install``, ``pip install`` without
``--user``) then fails: workspaces that must, need a writable root (the default).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CAPABILITIES", "SECURITY_OPTIONS", "WRITABLE_PATHS", "hardening"]

CAPABILITIES: tuple[str, ...] = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
)
"""Every capability a workspace's root has (``cap_drop: ALL`` first); why each, above."""

SECURITY_OPTIONS: tuple[str, ...] = ("no-new-privileges",)

WRITABLE_PATHS: dict[str, tuple[float, str]] = {
    "/tmp": (0.5, "exec"),  # build tools, pip and test runners run what they unpack here
    "/root": (0.5, "exec"),  # HOME: caches, ~/.local (pip --user, its scripts), git and shell config
    "/var/tmp": (0.25, "exec"),
    "/run": (0.0625, "noexec"),  # pid and lock files of servers
}
"""With a read-only root: each tmpfs, its size as a share of the workspace's memory limit, exec or not.

The sizes only keep one directory from taking all: everything in them is memory the
workspace's limit already bounds."""

_MIN_TMPFS = 1 << 20


def _tmpfs(memory_bytes: int) -> dict[str, str]:
    return {
        path: f"rw,{executable},nosuid,nodev,size={max(int(memory_bytes * share), _MIN_TMPFS)}"
        for path, (share, executable) in WRITABLE_PATHS.items()
    }


def hardening(*, read_only_root: bool, memory_bytes: int) -> dict[str, Any]:
    """Docker host-config arguments (``create_host_config``) that contain a workspace.

    Args:
        read_only_root: Mount the image read-only, with ``WRITABLE_PATHS`` as tmpfs.
        memory_bytes: The workspace's memory limit, which sizes the tmpfs.
    """
    options: dict[str, Any] = {
        "cap_drop": ["ALL"],
        "cap_add": list(CAPABILITIES),
        "security_opt": list(SECURITY_OPTIONS),
    }
    if read_only_root:
        options["read_only"] = True
        options["tmpfs"] = _tmpfs(memory_bytes)
    return options
