"""Disk use of directory trees, counted as ``du`` does, on real files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.providers.diskusage import tree_usage

MIB = 1 << 20


def allocated(path: Path) -> int:
    """Bytes the filesystem allocated to ``path`` itself (links not followed)."""
    return os.lstat(path).st_blocks * 512


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_files_and_nested_directories_are_all_counted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    paths = [
        write(root / "a.bin", MIB),
        write(root / "sub" / "b.bin", 2 * MIB),
        write(root / "sub" / "deeper" / "c.txt", 10),
        write(root / "sub" / "deeper" / "still" / "d.bin", 300_000),
    ]
    directories = [root / "sub", root / "sub" / "deeper", root / "sub" / "deeper" / "still"]
    usage = tree_usage(str(root))
    assert usage == sum(allocated(p) for p in paths + directories)
    assert usage >= 3 * MIB + 300_000


def test_a_sparse_file_counts_its_allocated_blocks_not_its_apparent_size(tmp_path: Path) -> None:
    sparse = tmp_path / "root" / "sparse.img"
    sparse.parent.mkdir()
    with sparse.open("wb") as f:
        f.truncate(512 * MIB)
        f.write(b"x")
    assert sparse.stat().st_size == 512 * MIB
    usage = tree_usage(str(sparse.parent))
    assert usage == allocated(sparse)
    assert 0 < usage < MIB


def test_a_file_with_several_hard_links_is_counted_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    original = write(root / "original.bin", 4 * MIB)
    (root / "elsewhere").mkdir()
    os.link(original, root / "link-1.bin")
    os.link(original, root / "elsewhere" / "link-2.bin")
    assert os.stat(original).st_nlink == 3
    assert tree_usage(str(root)) == allocated(original) + allocated(root / "elsewhere")


def test_hard_links_across_roots_are_counted_once_for_the_roots_together(tmp_path: Path) -> None:
    first, second = tmp_path / "upper", tmp_path / "volume"
    shared = write(first / "shared.bin", 2 * MIB)
    second.mkdir()
    os.link(shared, second / "shared-too.bin")
    alone = write(second / "alone.bin", MIB)
    assert tree_usage(str(second)) == allocated(shared) + allocated(alone)  # each root alone counts it
    assert tree_usage(str(first), str(second)) == allocated(shared) + allocated(alone)


def test_a_symlink_counts_as_the_link_only_never_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    big = write(outside / "big.bin", 8 * MIB)
    write(outside / "dir" / "more.bin", 8 * MIB)
    root = tmp_path / "root"
    root.mkdir()
    (root / "to-file").symlink_to(big)
    (root / "to-dir").symlink_to(outside / "dir", target_is_directory=True)
    (root / "to-host-root").symlink_to("/")
    (root / "dangling").symlink_to(tmp_path / "nothing-here")
    links = ["to-file", "to-dir", "to-host-root", "dangling"]
    usage = tree_usage(str(root))
    assert usage == sum(allocated(root / name) for name in links)
    assert usage < MIB


def test_a_hard_linked_file_and_a_symlink_to_it_do_not_double_count_or_follow(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = write(root / "data.bin", MIB)
    os.link(data, root / "data-link.bin")
    (root / "data-symlink").symlink_to(data)
    assert tree_usage(str(root)) == allocated(data) + allocated(root / "data-symlink")


@pytest.mark.parametrize("missing", ["never-made", "a-file-not-a-directory"])
def test_missing_roots_count_as_empty(tmp_path: Path, missing: str) -> None:
    write(tmp_path / "a-file-not-a-directory", MIB)
    assert tree_usage(str(tmp_path / missing)) == 0
    assert tree_usage() == 0


def test_several_roots_add_up_and_missing_ones_among_them_are_skipped(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "one.bin", MIB)
    b = write(tmp_path / "b" / "nested" / "two.bin", 3 * MIB)
    alone_a, alone_b = tree_usage(str(tmp_path / "a")), tree_usage(str(tmp_path / "b"))
    assert alone_a == allocated(a)
    assert alone_b == allocated(b) + allocated(b.parent)
    together = tree_usage(str(tmp_path / "a"), str(tmp_path / "gone"), str(tmp_path / "b"))
    assert together == alone_a + alone_b


def test_an_empty_directory_tree_counts_only_its_subdirectories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "x" / "y").mkdir(parents=True)
    assert tree_usage(str(root)) == allocated(root / "x") + allocated(root / "x" / "y")


def test_the_total_matches_du_for_a_mixed_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "a.bin", 3 * MIB)
    write(root / "b" / "c.bin", 123_457)
    os.link(root / "a.bin", root / "b" / "a-again.bin")
    (root / "b" / "link").symlink_to(root / "a.bin")
    with (root / "hole.img").open("wb") as f:
        f.truncate(64 * MIB)
    du = subprocess.run(["du", "-s", "-B1", str(root)], capture_output=True, text=True, check=True)
    # du also counts the root directory itself, which tree_usage leaves out.
    assert tree_usage(str(root)) == int(du.stdout.split()[0]) - allocated(root)


def test_a_tree_nested_past_the_hosts_path_max_is_counted_to_its_bottom(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    while depth * 101 < 3 * 4096:  # each level adds 101 characters: three times PATH_MAX deep
        os.mkdir("d" * 100, dir_fd=fd)
        below = os.open("d" * 100, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, depth = below, depth + 1
    bottom = os.open("filler.bin", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
    os.write(bottom, os.urandom(4 * MIB))
    os.close(bottom)
    os.close(fd)
    try:
        assert tree_usage(str(root)) >= 4 * MIB + depth * 4096
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)
