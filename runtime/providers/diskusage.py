"""Disk space a directory tree occupies, as ``du`` counts it.

Allocated blocks (``st_blocks * 512``), not apparent sizes, so sparse files count for
what they occupy; hard links are counted once; symbolic links are never followed, so a
workspace cannot point the measurement elsewhere on the host. A tree nested past the
host's ``PATH_MAX`` (which a workspace can make, to hide a disk filler) is counted too:
such a directory is opened one stretch of its path at a time, each relative to the last.
"""

from __future__ import annotations

import os

__all__ = ["tree_usage"]

_STRETCH = 2048  # characters of a path opened at once: well under PATH_MAX (4096)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_directory(path: str) -> int:
    """A descriptor of the directory ``path``, however long; its last part is never a symbolic link."""
    if len(path) < _STRETCH:
        return os.open(path, _DIRECTORY)
    parts = path.split("/")
    fd = os.open("/" if path.startswith("/") else ".", _DIRECTORY)
    try:
        stretch: list[str] = []
        for part in parts:
            if not part:
                continue
            if stretch and len("/".join(stretch)) + len(part) + 1 >= _STRETCH:
                fd = _open_at(fd, "/".join(stretch))
                stretch = []
            stretch.append(part)
        return _open_at(fd, "/".join(stretch)) if stretch else fd
    except BaseException:
        os.close(fd)
        raise


def _open_at(fd: int, relative: str) -> int:
    """Open ``relative`` under the directory ``fd``, closing ``fd`` whatever happens."""
    try:
        return os.open(relative, _DIRECTORY, dir_fd=fd)
    finally:
        os.close(fd)


def tree_usage(*roots: str) -> int:
    """Bytes allocated under ``roots`` together (missing roots count as empty)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = list(roots)
    while stack:
        path = stack.pop()
        try:
            fd = _open_directory(path)
        except OSError:  # gone, not a directory (or a link) any more
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed while we walked
                    if info.st_nlink > 1:
                        key = (info.st_dev, info.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(f"{path}/{entry.name}")
        finally:
            os.close(fd)
    return total
