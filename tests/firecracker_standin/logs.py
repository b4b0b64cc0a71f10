"""Firecracker's log lines: ``<local time> [<instance id>:<thread>] <message>`` on stdout or a file.

As ``src/vmm/src/logger/logging.rs``: stdout unless ``--log-path`` (or ``PUT /logger``)
names a file, which is opened (created if missing) non-blocking and appended to; the level
filter defaults to ``Info``; ``show_level`` adds ``:LEVEL`` after the thread name. The
guest's console shares stdout with these lines, as it does in Firecracker.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

__all__ = ["LEVELS", "Logger"]

LEVELS = {"off": 0, "error": 1, "warn": 2, "warning": 2, "info": 3, "debug": 4, "trace": 5}
"""Level names (case-insensitive, as ``LevelFilter::from_str``) and their order."""

_NAMES = {1: "ERROR", 2: "WARN", 3: "INFO", 4: "DEBUG", 5: "TRACE"}


def _local_time() -> str:
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds)) + f".{nanos:09d}"


class Logger:
    """Firecracker's logger.

    Args:
        instance_id: The ``--id`` (``anonymous-instance`` by default).
    """

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.level = LEVELS["info"]
        self.show_level = False
        self._target: IO[bytes] | None = None
        self._lock = threading.Lock()

    def configure(self, path: str | None = None, level: str | None = None, show_level: bool | None = None) -> None:
        """Apply ``--log-path``/``--level``/``--show-level`` or a ``PUT /logger`` body.

        Raises:
            OSError: The log file cannot be opened.
            KeyError: ``level`` is not a level name.
        """
        if path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
            os.lseek(fd, 0, os.SEEK_END)
            self._target = os.fdopen(fd, "ab", buffering=0)
        if level is not None:
            self.level = LEVELS[level.lower()]
        if show_level is not None:
            self.show_level = show_level

    def log(self, level: str, message: str, thread: str = "fc_api") -> None:
        """One line at ``level`` (``error``, ``warn``, ``info``, ``debug``), if the filter lets it through."""
        rank = LEVELS[level]
        if rank > self.level:
            return
        tag = f":{_NAMES[rank]}" if self.show_level else ""
        line = f"{_local_time()} [{self.instance_id}:{thread}{tag}] {message}\n".encode()
        with self._lock:
            try:
                if self._target is not None:
                    self._target.write(line)
                else:
                    sys.stdout.buffer.write(line)
                    sys.stdout.buffer.flush()
            except OSError:
                pass  # Firecracker counts a missed log line in its metrics and goes on

    def info(self, message: str, thread: str = "fc_api") -> None:
        """An ``Info`` line."""
        self.log("info", message, thread)

    def error(self, message: str, thread: str = "fc_api") -> None:
        """An ``Error`` line."""
        self.log("error", message, thread)

    def warn(self, message: str, thread: str = "fc_api") -> None:
        """A ``Warn`` line."""
        self.log("warn", message, thread)
