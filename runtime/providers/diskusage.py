"""Disk space a directory tree occupies, as ``du`` counts it.

Allocated blocks (``st_blocks * 512``), not apparent sizes, so sparse files count for
what they occupy; hard links are counted once; symbolic links are never followed, so a
workspace cannot point the measurement elsewhere on the host.
"""

from __future__ import annotations

import os

__all__ = ["tree_usage"]


def tree_usage(*roots: str) -> int:
    """Bytes allocated under ``roots`` together (missing roots count as empty)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = list(roots)
    while stack:
        path = stack.pop()
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we walked
                if info.st_nlink > 1:
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += info.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total
