"""The guest kernel and initrd: the pure parts on synthetic input, then one real build from Debian's packages."""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from runtime.errors import ProviderUnavailable
from runtime.providers.firecracker.guest import (
    GUEST_MODULES,
    CpioEntry,
    build_guest,
    extract_vmlinux,
    find_all,
    has_pvh_note,
    module_closure,
    write_cpio,
)

Entries = dict[str, tuple[int, bytes, tuple[int, int]]]


def read_cpio(data: bytes) -> Entries:
    """A "newc" archive's entries by name: (mode, data, rdev); checks the format's 4-byte alignment."""
    entries: Entries = {}
    at = 0
    while True:
        assert data[at : at + 6] == b"070701", f"no newc header at {at}"
        fields = [int(data[at + 6 + 8 * index : at + 14 + 8 * index], 16) for index in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[at + 110 : at + 110 + namesize - 1].decode()
        assert data[at + 110 + namesize - 1] == 0
        at = (at + 110 + namesize + 3) // 4 * 4
        body = data[at : at + size]
        at = (at + size + 3) // 4 * 4
        if name == "TRAILER!!!":
            assert at == len(data)
            return entries
        entries[name] = (mode, body, (fields[9], fields[10]))


def elf_with_notes(*notes: tuple[bytes, int]) -> bytes:
    """A minimal 64-bit little-endian ELF file with one PT_NOTE segment holding ``notes`` (name, type)."""
    body = b""
    for name, kind in notes:
        named = name + b"\0"
        body += struct.pack("<III", len(named), 8, kind) + named.ljust((len(named) + 3) // 4 * 4, b"\0") + bytes(8)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(body), len(body), 4)
    return bytes(header) + phdr + body


def test_the_cpio_writer_writes_newc_entries_of_every_kind() -> None:
    archive = write_cpio(
        [
            CpioEntry("bin", stat.S_IFDIR | 0o755),
            CpioEntry("/init", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
            CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
            CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
            CpioEntry("empty", stat.S_IFREG | 0o644),
        ]
    )
    entries = read_cpio(archive)
    assert list(entries) == ["bin", "init", "bin/sh", "dev/console", "empty"]
    assert entries["init"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n", (0, 0))
    assert entries["bin/sh"][1] == b"busybox"
    assert stat.S_ISLNK(entries["bin/sh"][0])
    assert entries["dev/console"] == (stat.S_IFCHR | 0o600, b"", (5, 1))
    assert stat.S_ISDIR(entries["bin"][0])


def test_the_compressed_kernel_is_found_by_its_magic_after_decoys() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    payload = gzip.compress(elf, mtime=0)
    decoy = b"\x1f\x8b\x08" + b"not gzip at all"  # the magic, inside the setup code: skipped
    bzimage = b"MZ" + bytes(500) + decoy + bytes(100) + payload + b"\x00trailing bytes of the bzImage"
    assert find_all(bzimage, b"\x1f\x8b\x08") == [502, 502 + len(decoy) + 100]
    assert extract_vmlinux(bzimage) == elf


def test_an_lz4_legacy_frame_is_found_and_inflated_with_the_lz4_tool() -> None:
    if shutil.which("lz4") is None:
        pytest.fail("the lz4 tool is missing (apt-get install lz4): the Debian kernel needs it")
    elf = b"\x7fELF" + b"kernel text " * 5000
    frame = subprocess.run(["lz4", "-l", "-c"], input=elf, capture_output=True, check=True).stdout
    assert frame.startswith(b"\x02\x21\x4c\x18")
    assert extract_vmlinux(b"\x02\x21\x4c\x18decoy" + bytes(64) + frame + bytes(16) + b"\xff" * 40) == elf


def test_a_bzimage_without_a_compressed_elf_is_refused() -> None:
    with pytest.raises(ProviderUnavailable, match="no compressed ELF kernel"):
        extract_vmlinux(b"MZ" + bytes(4096) + gzip.compress(b"not an ELF file"))


def test_the_pvh_note_is_told_apart_from_other_xen_notes() -> None:
    assert has_pvh_note(elf_with_notes((b"Xen", 6), (b"Xen", 18)))
    assert not has_pvh_note(elf_with_notes((b"Xen", 6), (b"Xen", 17)))
    assert not has_pvh_note(elf_with_notes((b"GNU", 18)))
    assert not has_pvh_note(b"MZ" + bytes(200))


def test_modules_come_with_their_dependencies_first_each_once_and_builtins_left_out() -> None:
    shipped = {
        "virtio_ring": [],
        "virtio": ["virtio_ring"],
        "virtio_blk": ["virtio", "virtio_ring"],
        "vsock": [],
        "vmw_vsock_virtio_transport_common": ["vsock"],
        "vmw_vsock_virtio_transport": ["virtio", "vmw_vsock_virtio_transport_common", "vsock"],
        "cycle_a": ["cycle-b"],
        "cycle_b": ["cycle_a"],
    }
    order = module_closure(["virtio-blk", "ext4", "vmw_vsock_virtio_transport"], shipped.get, builtin={"ext4"})
    assert order == ["virtio_ring", "virtio", "virtio_blk", "vsock", "vmw_vsock_virtio_transport_common",
                     "vmw_vsock_virtio_transport"]  # fmt: skip
    assert module_closure(["cycle_a"], shipped.get, builtin=set()) == ["cycle_b", "cycle_a"]


def test_a_module_neither_built_in_nor_shipped_is_named_with_who_needs_it() -> None:
    with pytest.raises(ProviderUnavailable, match=r"virtio_ring \(needed by virtio\) is neither built in nor shipped"):
        module_closure(["virtio"], {"virtio": ["virtio_ring"]}.get, builtin=set())


def test_the_real_guest_is_built_from_debians_cloud_kernel(tmp_path: Path) -> None:
    out = tmp_path / "guest"
    try:
        check_real_guest(out, tmp_path / "tools")
    finally:
        shutil.rmtree(out, ignore_errors=True)  # 50 MB of kernel


def check_real_guest(out: Path, tools: Path) -> None:
    built = build_guest(out)
    assert built.built
    assert sorted(path.name for path in out.iterdir()) == ["initrd.img", "manifest.json", "vmlinux"]

    kernel = built.vmlinux.read_bytes()
    assert kernel.startswith(b"\x7fELF")
    assert has_pvh_note(kernel)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == built.manifest
    assert manifest["kernel_release"].endswith("-cloud-amd64")
    modules = manifest["modules"]
    for wanted in ("virtio_mmio", "virtio_blk", "vsock", "vmw_vsock_virtio_transport", "overlay", "virtio_net"):
        assert wanted in modules
    assert "ext4" not in modules  # built into this kernel
    assert modules.index("virtio_ring") < modules.index("virtio") < modules.index("virtio_blk")
    assert set(GUEST_MODULES) - {"ext4"} <= set(modules)

    entries = read_cpio(gzip.decompress(built.initrd.read_bytes()))
    init_mode, init, _ = entries["init"]
    assert init_mode == stat.S_IFREG | 0o755
    assert b"switch_root /newroot" in init
    assert " ".join(modules).encode() in init
    busybox_mode, busybox, _ = entries["bin/busybox"]
    assert busybox.startswith(b"\x7fELF")
    assert busybox_mode & 0o111
    assert entries["bin/sh"][1] == b"busybox"
    assert entries["dev/console"][2] == (5, 1)
    for name in modules:
        assert entries[f"lib/modules/{name}.ko"][1].startswith(b"\x7fELF"), name

    # The initrd's own busybox agrees: it reads the archive and parses /init.
    tools.mkdir()
    (tools / "busybox").write_bytes(busybox)
    (tools / "busybox").chmod(0o755)
    (tools / "init").write_bytes(init)
    listed = subprocess.run(
        [str(tools / "busybox"), "cpio", "-t"],
        input=gzip.decompress(built.initrd.read_bytes()),
        capture_output=True,
        check=True,
    )
    assert {"init", "bin/busybox", "lib/modules/virtio_blk.ko"} <= set(listed.stdout.decode().split())
    subprocess.run([str(tools / "busybox"), "sh", "-n", str(tools / "init")], check=True)

    again = build_guest(out)
    assert not again.built
    assert again.vmlinux.stat().st_mtime_ns == built.vmlinux.stat().st_mtime_ns
