"""Percentiles and a one-line report, shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(name: str, seconds: Sequence[float], unit: str = "us") -> dict[str, float | str]:
    """p50/p90/p99/mean of ``seconds`` in ``unit`` (``us`` or ``ms``)."""
    scale = 1e6 if unit == "us" else 1e3
    return {
        "name": name,
        "n": len(seconds),
        "unit": unit,
        "p50": percentile(seconds, 50) * scale,
        "p90": percentile(seconds, 90) * scale,
        "p99": percentile(seconds, 99) * scale,
        "mean": statistics.fmean(seconds) * scale,
    }


def table(rows: Sequence[dict[str, float | str]], baseline: str | None = None) -> str:
    """Rows as a fixed-width table, with p50 ratios against the ``baseline`` row."""
    base = next((row for row in rows if row["name"] == baseline), None)
    lines = [f"{'path':44} {'n':>6} {'p50':>10} {'p90':>10} {'p99':>10} {'mean':>10}  ratio(p50)"]
    for row in rows:
        ratio = f"{float(row['p50']) / float(base['p50']):.2f}x" if base else ""
        unit = row["unit"]
        lines.append(
            f"{row['name']:44} {row['n']:>6} {row['p50']:>8.1f}{unit} {row['p90']:>8.1f}{unit} "
            f"{row['p99']:>8.1f}{unit} {row['mean']:>8.1f}{unit}  {ratio}"
        )
    return "\n".join(lines)


def interleaved(
    paths: dict[str, Callable[[], object]], n: int, warmup: int, rounds: int = 10
) -> dict[str, list[float]]:
    """Time each path in alternating rounds, so machine noise hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for call in paths.values():
        for _ in range(warmup):
            call()
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, call in paths.items():
            bucket = samples[name]
            for _ in range(per_round):
                began = time.perf_counter()
                call()
                bucket.append(time.perf_counter() - began)
    return samples
