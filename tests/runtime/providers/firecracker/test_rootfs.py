"""The guest's root filesystem from a real Docker image, and the data drive, checked with ``debugfs``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.config import load_settings
from runtime.errors import BadRequest, ProviderUnavailable
from runtime.providers.firecracker import rootfs as rootfs_module
from runtime.providers.firecracker.rootfs import GUEST_INIT, MIN_DATA_BYTES, MOUNTPOINTS, Rootfs, make_data_drive
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

BASE_IMAGE = load_settings(env={"WORKSPACE_CONFIG": str(ROOT / "configs" / "default.toml")}).default_image
BUILD_LABEL = "agent-workspaces.rootfs-build"


@dataclass
class Built:
    cache: Rootfs
    path: Path


def debugfs(image: Path, request: str) -> str:
    """What ``debugfs -R request`` prints about ``image`` (read-only: nothing is mounted)."""
    done = subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, check=True)
    return done.stdout.decode(errors="replace")


def superblock(image: Path) -> dict[str, str]:
    done = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, check=True, text=True)
    pairs = (line.partition(":") for line in done.stdout.splitlines())
    return {name.strip(): value.strip() for name, _, value in pairs if value}


def build_containers(client: Any) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": BUILD_LABEL}))


@pytest.fixture(scope="session")
def init_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real guest init (or, while it is being written, a stand-in with its first line)."""
    if GUEST_INIT.is_file():
        return GUEST_INIT
    stand_in = tmp_path_factory.mktemp("init") / "guest_init.py"
    stand_in.write_text("#!/usr/bin/python3 -IS\nraise SystemExit('stand-in init')\n")
    return stand_in


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, init_file: Path) -> Iterator[Built]:
    """The base image's rootfs, built once for this module's tests (and removed after them)."""
    cache_dir = tmp_path_factory.mktemp("rootfs-cache")
    cache = Rootfs(cache_dir, init_file)
    path = cache.ensure(BASE_IMAGE)
    try:
        yield Built(cache, path)
    finally:
        shutil.rmtree(cache_dir)


@pytest.fixture
def no_python_image(docker_client: Any, tmp_path: Path) -> Iterator[str]:
    """A local image of one file and no python3 (``docker import``: no registry involved)."""
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    tag = f"agent-workspaces-test/no-python:{os.getpid()}"
    subprocess.run(["docker", "import", str(archive), tag], capture_output=True, check=True)
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


def test_the_rootfs_holds_the_guest_init_as_a_root_owned_executable(built: Built, init_file: Path) -> None:
    stat = debugfs(built.path, "stat /sbin/workspace-init")
    assert "Type: regular" in stat
    assert "Mode:  0755" in stat
    assert "User:     0   Group:     0" in stat
    assert debugfs(built.path, "cat /sbin/workspace-init").encode() == init_file.read_bytes()


def test_the_rootfs_keeps_the_images_files_with_their_modes_and_links(built: Built) -> None:
    assert "Type: symlink" in debugfs(built.path, "stat /usr/bin/python3")  # python3 -> python3.11
    python = debugfs(built.path, "stat /usr/bin/python3.11")
    assert "Type: regular" in python
    assert "Mode:  0755" in python
    assert "Mode:  04755" in debugfs(built.path, "stat /usr/bin/su")  # setuid kept
    assert 'Fast link dest: "usr/bin"' in debugfs(built.path, "stat /bin")
    assert debugfs(built.path, "cat /etc/passwd").startswith("root:x:0:0:")
    assert "dockerenv" not in debugfs(built.path, "ls /")


def test_the_rootfs_has_every_mountpoint_the_guest_uses(built: Built) -> None:
    for name in MOUNTPOINTS:
        stat = debugfs(built.path, f"stat /{name}")
        assert "Type: directory" in stat, name
        assert ("Mode:  01777" if name == "tmp" else "Mode:  0755") in stat, name


def test_the_rootfs_is_a_journal_less_ext4_labelled_rootfs(built: Built) -> None:
    fields = superblock(built.path)
    assert fields["Filesystem volume name"] == "rootfs"
    assert "has_journal" not in fields["Filesystem features"]
    assert "extent" in fields["Filesystem features"]
    free = int(fields["Free blocks"]) / int(fields["Block count"])
    assert 0.0 < free < 0.3, f"headroom {free:.0%}"


def test_a_second_ensure_uses_the_cache_without_rebuilding(built: Built) -> None:
    before = built.path.stat()
    again = built.cache.ensure(BASE_IMAGE)
    assert again == built.path
    after = again.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    [entry] = built.cache.entries()
    assert entry["image"] == BASE_IMAGE
    assert entry["image_id"].startswith("sha256:")
    assert entry["size"] == before.st_size
    assert entry["path"] == str(built.path)
    assert entry["built_at"] > 0


def test_a_build_leaves_no_container_and_no_temporary_file(built: Built, docker_client: Any) -> None:
    assert build_containers(docker_client) == []
    key = built.path.stem
    assert sorted(p.name for p in built.cache.cache_dir.iterdir()) == [f"{key}.ext4", f"{key}.json", f"{key}.lock"]


def test_concurrent_callers_build_a_new_key_once(tmp_path: Path, init_file: Path) -> None:
    changed_init = tmp_path / "init.py"
    changed_init.write_bytes(init_file.read_bytes() + b"\n# another init, another key\n")
    builds: list[str] = []

    class Counting(Rootfs):
        def _build(self, image: str, image_id: str, key: str) -> Path:
            builds.append(key)
            return super()._build(image, image_id, key)

    cache = Counting(tmp_path / "cache", changed_init)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cache.ensure(BASE_IMAGE))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 3
    assert len(set(results)) == 1
    assert len(builds) == 1
    assert cache.prune() == results[:1]
    assert not results[0].exists()


def test_an_image_without_python3_is_refused_and_leaves_nothing(
    no_python_image: str, tmp_path: Path, init_file: Path, docker_client: Any
) -> None:
    cache = Rootfs(tmp_path / "cache", init_file)
    with pytest.raises(BadRequest, match=r"no-python.*has no /usr/bin/python3"):
        cache.ensure(no_python_image)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]
    assert build_containers(docker_client) == []


def test_an_image_that_is_not_here_is_a_bad_request(tmp_path: Path, init_file: Path) -> None:
    with pytest.raises(BadRequest, match="not found"):
        Rootfs(tmp_path / "cache", init_file).ensure("agent-workspaces-test/absent:never")


def extract_safely(archive: io.BytesIO, tree: Path) -> None:
    """Unpack ``archive`` into a new directory ``tree`` as a root filesystem build does (streamed, filtered)."""
    archive.seek(0)
    tree.mkdir()
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        tar.extractall(tree, filter=rootfs_module._SafeMembers())


def test_an_archive_member_behind_a_symlink_is_never_written_outside_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        link = tarfile.TarInfo("etc")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        evil = tarfile.TarInfo("etc/passwd")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    with pytest.raises(tarfile.FilterError, match="beyond a symlink"):
        extract_safely(archive, tmp_path / "tree")
    assert list(outside.iterdir()) == []


def test_a_hard_link_to_a_file_outside_the_image_is_refused_and_the_hosts_file_untouched(tmp_path: Path) -> None:
    host_file = tmp_path / "host-passwd"
    host_file.write_text("the host's")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        target = tarfile.TarInfo("etc/passwd")
        target.size = 6
        tar.addfile(target, io.BytesIO(b"guest\n"))
        link = tarfile.TarInfo("x")
        link.type, link.linkname = tarfile.LNKTYPE, str(host_file)  # absolute: the host's file
        tar.addfile(link)
        over = tarfile.TarInfo("x")
        over.size = 4
        tar.addfile(over, io.BytesIO(b"evil"))
    with pytest.raises(tarfile.FilterError, match="not a file of"):
        extract_safely(archive, tmp_path / "tree")
    assert host_file.read_text() == "the host's"


def test_a_chain_of_more_symlinks_than_are_followed_is_refused_rather_than_followed_out(tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    tree.mkdir()
    outside.mkdir()
    (tree / "sbin").symlink_to("l0")
    for hop in range(41):
        (tree / f"l{hop}").symlink_to(f"l{hop + 1}")
    (tree / "l41").symlink_to(outside)
    init = tmp_path / "init"
    init.write_text("#!/bin/sh\n")
    with pytest.raises(BadRequest, match="more than 40 symbolic links"):
        rootfs_module._add_guest_files(tree, init)
    assert list(outside.iterdir()) == []


def test_the_data_drive_is_a_sparse_ext4_labelled_workspace_holding_the_guest_settings(tmp_path: Path) -> None:
    guest = {"workspace_id": "ws_test", "env": {"K": "V"}, "vsock_port": 52, "network": None}
    drive = tmp_path / "data.ext4"
    make_data_drive(drive, 4 << 30, guest)
    info = drive.stat()
    assert info.st_size == 4 << 30
    assert info.st_blocks * 512 < 32 << 20, f"{info.st_blocks * 512} bytes allocated"
    assert superblock(drive)["Filesystem volume name"] == "workspace"
    stat = debugfs(drive, "stat /.agent-workspaces/guest.json")
    assert "Mode:  0600" in stat
    assert "User:     0   Group:     0" in stat
    assert "Mode:  0700" in debugfs(drive, "stat /.agent-workspaces")
    assert json.loads(debugfs(drive, "cat /.agent-workspaces/guest.json")) == guest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.ext4"]  # the staging directory is gone


def test_a_data_drive_too_small_for_ext4_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="too small"):
        make_data_drive(tmp_path / "data.ext4", MIN_DATA_BYTES - 1, {})
    assert list(tmp_path.iterdir()) == []


def test_a_failing_mkfs_is_reported_with_its_message_and_leaves_no_file(tmp_path: Path) -> None:
    too_big = {"filler": "x" * (3 * MIN_DATA_BYTES)}  # more than the drive holds
    with pytest.raises(ProviderUnavailable, match=r"mkfs.ext4 of the data drive .* failed: .*\S"):
        make_data_drive(tmp_path / "data.ext4", MIN_DATA_BYTES, too_big)
    assert list(tmp_path.iterdir()) == []
