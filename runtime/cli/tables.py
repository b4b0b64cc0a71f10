"""How the CLI prints: tables and sizes for people, JSON for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from runtime.errors import ConfigError
from runtime.messages import WorkspaceRecord

__all__ = ["age", "pairs", "pct", "print_json", "records_table", "size", "states", "table"]


def pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``--env``, ``--label``) as a map; ``ConfigError`` for anything else."""
    result = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--{what} {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


def size(value: int) -> str:
    """Bytes in the largest binary unit that fits: ``4G``, ``512M``."""
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return str(value)


def age(timestamp: float | None, now: float) -> str:
    """A moment relative to ``now``: ``3m ago``, ``in 2d``, ``never``."""
    if timestamp is None:
        return "never"
    seconds = timestamp - now
    sign = "in " if seconds > 0 else ""
    suffix = "" if seconds > 0 else " ago"
    seconds = abs(seconds)
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= scale:
            return f"{sign}{seconds / scale:.0f}{unit}{suffix}"
    return f"{sign}{seconds:.0f}s{suffix}"


def table(rows: list[list[str]]) -> str:
    """Rows as aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def records_table(records: list[WorkspaceRecord]) -> str:
    """Workspace records as ``workspaces ls`` prints them."""
    now = time.time()
    rows = [["ID", "STATE", "PROVIDER", "RUNTIME", "CPU", "MEMORY", "CREATED", "EXPIRES", "LABELS"]]
    for record in records:
        labels = ",".join(f"{key}={value}" for key, value in sorted(record.labels.items()))
        rows.append(
            [
                record.id,
                record.state,
                record.provider,
                record.runtime,
                f"{record.cpu:g}",
                size(record.memory_bytes),
                age(record.created_at, now),
                age(record.expires_at, now),
                labels,
            ]
        )
    return table(rows)


def print_json(value: Any) -> None:
    """Print any struct or plain value as indented JSON."""
    print(json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=True))


def pct(value: float | None) -> str:
    """A percentage, or ``-`` when not measured."""
    return "-" if value is None else f"{value:.0f}%"


def states(by_state: dict[str, int]) -> str:
    """Counts by state: ``2 ready, 1 failed``."""
    return ", ".join(f"{count} {state}" for state, count in sorted(by_state.items())) or "none"
