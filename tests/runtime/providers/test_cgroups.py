"""Reading CPU time and memory from a cgroup, on this machine's real cgroup tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.providers.cgroups import CgroupFiles, find_cgroup, read_usage


def test_the_cgroup_of_a_real_process_is_found_and_read() -> None:
    files = find_cgroup(os.getpid())
    assert files is not None
    usage = read_usage(files)
    assert usage.cpu_seconds > 0 and usage.memory_bytes > 0


def test_a_process_that_does_not_exist_has_no_cgroup() -> None:
    assert find_cgroup(2**22 + 12345) is None


def test_v2_counters_are_read_from_cpu_stat_and_memory_current(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (tmp_path / "memory.current").write_text(str(300 << 20))
    (tmp_path / "memory.stat").write_text(f"anon {200 << 20}\ninactive_file {100 << 20}\n")
    files = CgroupFiles(
        cpu=str(tmp_path / "cpu.stat"),
        cpu_v2=True,
        memory=str(tmp_path / "memory.current"),
        memory_stat=str(tmp_path / "memory.stat"),
    )
    usage = read_usage(files)
    assert (usage.cpu_seconds, usage.memory_bytes) == (2.5, 200 << 20)


def test_a_vanished_cgroup_raises_os_error(tmp_path: Path) -> None:
    files = CgroupFiles(cpu=str(tmp_path / "gone"), cpu_v2=False, memory="", memory_stat="")
    with pytest.raises(OSError):
        read_usage(files)
