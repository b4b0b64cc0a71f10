"""The guest's kernel and initrd, built from Debian's cloud kernel (``make firecracker-guest``).

Firecracker boots an uncompressed ELF ``vmlinux`` through its PVH entry point. Debian's
``linux-image-*-cloud-amd64`` has ``CONFIG_PVH=y`` but ships a compressed ``bzImage`` and has
virtio-mmio, virtio-blk, vsock and virtio-net as modules, so ``build_guest`` downloads it and
``busybox-static`` (``apt-get download``, no install), extracts the ELF from the ``bzImage``
(the compressed payload, found by its magic), checks its PVH note, and writes an initrd
(cpio "newc", gzip): busybox, the needed modules with their dependencies in load order, and
an ``/init`` that loads them, mounts the root drive read-only and ``switch_root``s to
``/sbin/workspace-init``. That kernel has no ``CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES``: it finds
Firecracker's virtio-mmio devices through ACPI, which Firecracker describes from v1.8 on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ProviderUnavailable
from runtime.providers.firecracker.tools import run_tool

__all__ = [
    "DEFAULT_OUT", "GUEST_MODULES", "CpioEntry", "GuestBuild", "build_guest", "extract_vmlinux", "find_all",
    "has_pvh_note", "module_closure", "write_cpio",
]  # fmt: skip

DEFAULT_OUT = Path(__file__).resolve().parents[3] / "build" / "firecracker-guest"
"""Where ``make firecracker-guest`` writes ``vmlinux``, ``initrd.img`` and ``manifest.json``."""

KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
GUEST_MODULES = (
    "virtio_mmio", "virtio_blk", "ext4", "overlay", "virtio_net",
    "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
)  # fmt: skip
"""What the guest needs from its kernel, built in or as modules: the drives, the overlay, the network, vsock."""

APPLETS = ("sh", "cat", "echo", "insmod", "mkdir", "mount", "poweroff", "reboot", "sleep", "switch_root", "umount")

ELF_MAGIC = b"\x7fELF"
XEN_ELFNOTE_PHYS32_ENTRY = 18
"""The ELF note holding the kernel's PVH entry point: how Firecracker enters an ELF kernel."""

INIT_SCRIPT = """#!/bin/sh
# The initrd of a Firecracker workspace (runtime/providers/firecracker/guest.py): load the
# drivers this kernel has as modules, mount the root drive read-only, hand over to its init.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "workspace-initrd: $*"; }
fail() {
    say "$*; stopping the VM"
    reboot -f  # with reboot=k, Firecracker ends when its guest reboots
    poweroff -f
}
root=/dev/vda rootfstype=ext4 init=/sbin/workspace-init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootfstype=*) rootfstype="${arg#rootfstype=}" ;;
        init=*) init="${arg#init=}" ;;
    esac
done
for module in @MODULES@; do
    insmod "/lib/modules/$module.ko" || say "insmod $module failed"
done
tries=0
until error=$(mount -t "$rootfstype" -o ro "$root" /newroot 2>&1); do
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || fail "cannot mount $root ($rootfstype) read-only: $error"
    sleep 0.05
done
for fs in dev proc sys; do
    mount -o move "/$fs" "/newroot/$fs" || fail "cannot move /$fs into $root"
done
say "starting $init from $root"
exec switch_root /newroot "$init"
fail "switch_root to $init failed"
"""


@dataclass(frozen=True)
class CpioEntry:
    """One file of a cpio archive.

    Attributes:
        name: Its path, without a leading ``/``.
        mode: ``st_mode``: the type bits and the permissions.
        data: A regular file's content, or a symlink's target.
        rdev: A device node's (major, minor).
    """

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class GuestBuild:
    """What ``build_guest`` left in its output directory.

    Attributes:
        vmlinux: The uncompressed ELF kernel.
        initrd: The gzip-compressed initrd.
        manifest: ``manifest.json``'s content: versions, modules, hashes.
        built: False when the outputs were already there for the same kernel and initrd recipe.
    """

    vmlinux: Path
    initrd: Path
    manifest: dict[str, Any]
    built: bool


def build_guest(out: Path = DEFAULT_OUT, *, force: bool = False) -> GuestBuild:
    """Download Debian's cloud kernel and busybox, and write ``vmlinux``, ``initrd.img`` and ``manifest.json``.

    Args:
        out: The output directory (created).
        force: Build even when ``out`` already holds this kernel's outputs.

    Raises:
        ProviderUnavailable: A package could not be found or downloaded, or the kernel is unusable.
    """
    package, release = _kernel_package()
    recipe = hashlib.sha256(json.dumps([INIT_SCRIPT, GUEST_MODULES, APPLETS]).encode()).hexdigest()
    vmlinux, initrd, manifest_path = out / "vmlinux", out / "initrd.img", out / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    fresh = manifest.get("kernel_release") == release and manifest.get("recipe") == recipe
    if fresh and not force and vmlinux.is_file() and initrd.is_file():
        return GuestBuild(vmlinux, initrd, manifest, built=False)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".firecracker-guest-", dir=out))
    try:
        _run(["apt-get", "download", "-q", package, BUSYBOX_PACKAGE], "apt-get download", cwd=work)
        versions = {}
        for deb in sorted(work.glob("*.deb")):
            name, version = (
                _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], "dpkg-deb").decode().split("\n")[:2]
            )
            versions[name.partition(": ")[2]] = version.partition(": ")[2]
            _run(["dpkg-deb", "-x", str(deb), str(work / "root")], f"dpkg-deb -x {deb.name}")
        kernel = extract_vmlinux((work / "root" / "boot" / f"vmlinuz-{release}").read_bytes())
        if not has_pvh_note(kernel):
            raise ProviderUnavailable(f"kernel {release} has no PVH ELF note (CONFIG_PVH): Firecracker can't boot it")
        modules, entries = _initrd_entries(work / "root", release)
        _replace(vmlinux, kernel)
        _replace(initrd, gzip.compress(write_cpio(entries), compresslevel=6, mtime=0))
        manifest = {
            "kernel_package": package,
            "kernel_release": release,
            "packages": versions,
            "modules": modules,
            "recipe": recipe,
            "built_at": time.time(),
            "vmlinux_sha256": hashlib.sha256(kernel).hexdigest(),
        }
        _replace(manifest_path, json.dumps(manifest, indent=2).encode())
        return GuestBuild(vmlinux, initrd, manifest, built=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------- the kernel


_DECOMPRESSORS: tuple[tuple[bytes, str], ...] = (
    (b"\x02\x21\x4c\x18", "lz4"),  # the LZ4 legacy frame the kernel's build writes
    (b"\x1f\x8b\x08", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a ``bzImage``: the first compressed stream in it that inflates to an ELF file.

    Raises:
        ProviderUnavailable: No such stream (or the ``lz4`` tool is missing for an LZ4 kernel).
    """
    for magic, method in _DECOMPRESSORS:
        for offset in find_all(bzimage, magic):
            elf = _decompress(method, bzimage[offset:])
            if elf.startswith(ELF_MAGIC):
                return elf
    raise ProviderUnavailable("no compressed ELF kernel found in the bzImage (lz4, gzip, xz or zstd)")


def find_all(data: bytes, magic: bytes) -> list[int]:
    """Every offset of ``magic`` in ``data``."""
    found, offset = [], data.find(magic)
    while offset >= 0:
        found.append(offset)
        offset = data.find(magic, offset + 1)
    return found


def _decompress(method: str, data: bytes) -> bytes:
    """What ``data`` inflates to (it may be followed by anything: the rest of the bzImage); b"" if it does not."""
    try:
        if method == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        if method == "xz":
            return lzma.LZMADecompressor().decompress(data)
    except (zlib.error, lzma.LZMAError):
        return b""
    try:
        # The tools complain about the bytes after the stream but write the stream out first.
        return subprocess.run([method, "-dc"], check=False, input=data, capture_output=True, timeout=300).stdout
    except FileNotFoundError as exc:
        raise ProviderUnavailable(f"{method} is needed to unpack this kernel (apt-get install {method})") from exc


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF kernel has a ``XEN_ELFNOTE_PHYS32_ENTRY`` note (PVH boot)."""
    if not elf.startswith(ELF_MAGIC) or elf[4] != 2 or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        kind, _flags, offset, _vaddr, _paddr, size = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        if kind != 4:  # PT_NOTE
            continue
        at, end = offset, offset + size
        while at + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, at)
            name = elf[at + 12 : at + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _kernel_package() -> tuple[str, str]:
    """The versioned kernel package the cloud metapackage depends on, and its release (``uname -r``)."""
    for attempt in range(2):
        try:
            shown = _run(["apt-cache", "show", "--no-all-versions", KERNEL_PACKAGE], "apt-cache show").decode()
        except ProviderUnavailable:
            shown = ""
        match = re.search(r"^Depends:.*?\b(linux-image-(\S+?-cloud-amd64)(?:-unsigned)?)\b", shown, re.MULTILINE)
        if match:
            return match.group(1), match.group(2)
        if attempt == 0 and os.geteuid() == 0:  # package lists never fetched on this machine
            _run(["apt-get", "update", "-q"], "apt-get update")
    raise ProviderUnavailable(f"apt knows no {KERNEL_PACKAGE} (run apt-get update; Debian's main archive is needed)")


# ---------------------------------------------------------------------- modules and the initrd


def module_closure(
    wanted: Iterable[str], depends: Callable[[str], Sequence[str] | None], builtin: Collection[str]
) -> list[str]:
    """The modules to load for ``wanted``, dependencies first, each once; built-in ones left out.

    Args:
        wanted: Module names (``-`` and ``_`` are the same).
        depends: A shipped module's dependencies; ``None`` for a module not shipped.
        builtin: The names built into the kernel.

    Raises:
        ProviderUnavailable: A module is neither built in nor shipped.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, needed_by: str) -> None:
        name = name.replace("-", "_")
        if name in builtin or name in order or name in visiting:
            return
        deps = depends(name)
        if deps is None:
            raise ProviderUnavailable(f"kernel module {name} ({needed_by}) is neither built in nor shipped")
        visiting.add(name)
        for dep in deps:
            visit(dep, f"needed by {name}")
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name, "wanted by the guest")
    return order


def _module_name(path: str) -> str:
    return re.sub(r"\.ko(\.xz|\.gz|\.zst)?$", "", path.rsplit("/", 1)[-1]).replace("-", "_")


def _modinfo_depends(module: bytes) -> list[str]:
    """The ``depends=`` of a module's ``.modinfo`` section (what ``depmod`` writes to ``modules.dep``)."""
    (shoff,) = struct.unpack_from("<Q", module, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", module, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", module, shoff + index * shentsize) for index in range(shnum)]
    names_at = headers[shstrndx][4]
    for name, _type, _flags, _addr, offset, size in headers:
        if module[names_at + name : module.index(b"\0", names_at + name)] == b".modinfo":
            for field in module[offset : offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return [dep for dep in field[8:].decode().split(",") if dep]
    return []


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return _run(["zstd", "-dc", str(path)], f"zstd -d {path.name}")
    return data


def _initrd_entries(root: Path, release: str) -> tuple[list[str], list[CpioEntry]]:
    """The modules in load order, and the initrd's files, from the extracted packages under ``root``."""
    kdir = root / "lib" / "modules" / release
    shipped = {_module_name(str(path)): path for path in kdir.rglob("*.ko*")}
    builtin_file = kdir / "modules.builtin"
    builtin = {_module_name(line) for line in builtin_file.read_text().split()} if builtin_file.exists() else set()
    contents: dict[str, bytes] = {}

    def depends(name: str) -> list[str] | None:
        if name not in shipped:
            return None
        contents[name] = _module_bytes(shipped[name])
        return _modinfo_depends(contents[name])

    modules = module_closure(GUEST_MODULES, depends, builtin)
    script = INIT_SCRIPT.replace("@MODULES@", " ".join(modules))
    entries = [CpioEntry(name, stat.S_IFDIR | 0o755) for name in ("bin", "dev", "lib", "lib/modules", "newroot")]
    entries += [CpioEntry(name, stat.S_IFDIR | 0o555) for name in ("proc", "sys")]
    entries += [
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("bin/busybox", stat.S_IFREG | 0o755, (root / "bin" / "busybox").read_bytes()),
        CpioEntry("init", stat.S_IFREG | 0o755, script.encode()),
    ]
    entries += [CpioEntry(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox") for applet in APPLETS]
    entries += [CpioEntry(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, contents[name]) for name in modules]
    return modules, entries


def write_cpio(entries: Iterable[CpioEntry]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks as its initramfs (owner root, time 0)."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, rdev: tuple[int, int], ino: int) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, *rdev, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % field for field in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4) + data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate(entries, start=1):
        add(entry.name.lstrip("/"), entry.mode, entry.data, entry.rdev, ino)
    add("TRAILER!!!", 0, b"", (0, 0), 0)
    return bytes(out)


# ---------------------------------------------------------------------- helpers


def _replace(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def _run(argv: list[str], what: str, cwd: Path | None = None) -> bytes:
    return run_tool(argv, what, install="a Debian host with apt is needed", timeout_s=900, cwd=cwd)
