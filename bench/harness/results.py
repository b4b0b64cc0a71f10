"""What a run measured: scenarios with our, the baseline's and the peer's samples, targets, scale points.

Samples are kept in seconds; ``unit`` only says how a scenario is shown (``us`` or
``ms``). A target is declarative (a few optional bounds), so it is stored in the JSON
as it was checked and its verdict is reproducible from the samples. A missed target
is information: ``Target.check`` returns reasons, it never raises.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["ScalePoint", "Scenario", "Stats", "Target", "percentile", "stats"]

Unit = Literal["us", "ms", "s"]
SCALE: dict[str, float] = {"us": 1e6, "ms": 1e3, "s": 1.0}


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile of ``samples`` by nearest rank: the smallest sample at or above ``pct``% of them."""
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass(frozen=True)
class Stats:
    """p50/p90/p99/max/mean of one series, in seconds, and how many samples."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def scaled(self, unit: Unit) -> dict[str, float]:
        """The same numbers in ``unit`` (``n`` unchanged), for the JSON and the table."""
        k = SCALE[unit]
        return {"n": self.n, "p50": self.p50 * k, "p90": self.p90 * k, "p99": self.p99 * k, "max": self.max * k,
                "mean": self.mean * k}  # fmt: skip


def stats(samples: Sequence[float]) -> Stats | None:
    """The summary of ``samples``, or ``None`` when there are none."""
    if not samples:
        return None
    return Stats(
        n=len(samples),
        p50=percentile(samples, 50),
        p90=percentile(samples, 90),
        p99=percentile(samples, 99),
        max=max(samples),
        mean=statistics.fmean(samples),
    )


@dataclass(frozen=True)
class Target:
    """Bounds a scenario should meet; every bound given must hold.

    Attributes:
        p50_max_s: Our p50 at most this.
        p99_max_s: Our p99 at most this.
        ratio_max: Our p50 at most this times the baseline's p50.
        speedup_min: The baseline's p50 at least this times ours (``ratio <= 1/speedup``).
        count_min: At least this many held (``Scenario.count``), e.g. workspaces in the scale run.
        errors_max: At most this many errors.
        text: How the target reads in the issue (shown beside the verdict).
    """

    text: str
    p50_max_s: float | None = None
    p99_max_s: float | None = None
    ratio_max: float | None = None
    speedup_min: float | None = None
    count_min: int | None = None
    errors_max: int | None = None

    def check(self, scenario: Scenario) -> tuple[bool, list[str]]:
        """Whether ``scenario`` meets every bound, and why not (one reason per bound missed)."""
        ours, ratio, unit = scenario.ours_stats, scenario.ratio, scenario.unit
        k = SCALE[unit]
        reasons: list[str] = []
        if ours is None:
            return False, ["no sample of ours"]
        if self.p50_max_s is not None and ours.p50 > self.p50_max_s:
            reasons.append(f"p50 {ours.p50 * k:.3g} {unit} > {self.p50_max_s * k:.3g} {unit}")
        if self.p99_max_s is not None and ours.p99 > self.p99_max_s:
            reasons.append(f"p99 {ours.p99 * k:.3g} {unit} > {self.p99_max_s * k:.3g} {unit}")
        if self.ratio_max is not None and (ratio is None or ratio > self.ratio_max):
            reasons.append("no baseline" if ratio is None else f"ratio {ratio:.2f}x > {self.ratio_max:g}x")
        if self.speedup_min is not None and (ratio is None or ratio * self.speedup_min > 1):
            speedup = "no baseline" if ratio is None else f"{1 / ratio:.1f}x faster"
            reasons.append(f"{speedup} < {self.speedup_min:g}x faster")
        if self.count_min is not None and scenario.count < self.count_min:
            reasons.append(f"held {scenario.count} < {self.count_min}")
        if self.errors_max is not None and scenario.errors > self.errors_max:
            reasons.append(f"{scenario.errors} errors > {self.errors_max}")
        return not reasons, reasons


@dataclass
class Scenario:
    """One path measured three ways in one run: ours, the raw baseline, and the peer when it has one.

    ``ratio`` is our p50 over the baseline's p50 (below 1: we are faster).
    """

    name: str
    group: str
    unit: Unit = "ms"
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    baseline_label: str = ""
    peer_label: str = ""
    target: Target | None = None
    count: int = 0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def ours_stats(self) -> Stats | None:
        """Our samples' summary."""
        return stats(self.ours)

    @property
    def baseline_stats(self) -> Stats | None:
        """The baseline's samples' summary."""
        return stats(self.baseline)

    @property
    def peer_stats(self) -> Stats | None:
        """The peer's samples' summary."""
        return stats(self.peer)

    @property
    def ratio(self) -> float | None:
        """Our p50 over the baseline's p50."""
        ours, base = self.ours_stats, self.baseline_stats
        if ours is None or base is None or base.p50 <= 0:
            return None
        return ours.p50 / base.p50

    @property
    def peer_ratio(self) -> float | None:
        """Our p50 over the peer's p50."""
        ours, peer = self.ours_stats, self.peer_stats
        if ours is None or peer is None or peer.p50 <= 0:
            return None
        return ours.p50 / peer.p50

    def verdict(self) -> tuple[str, list[str]]:
        """``met``, ``missed`` or ``-`` (no target), with the reasons of a miss."""
        if self.target is None:
            return "-", []
        met, reasons = self.target.check(self)
        return ("met" if met else "missed"), reasons

    def to_json(self) -> dict[str, Any]:
        """The scenario as the JSON report holds it (numbers in ``unit``)."""
        status, reasons = self.verdict()

        def series(value: Stats | None, label: str) -> dict[str, Any] | None:
            return None if value is None else {"label": label, **value.scaled(self.unit)}

        return {
            "name": self.name,
            "group": self.group,
            "unit": self.unit,
            "ours": series(self.ours_stats, "agent-workspaces"),
            "baseline": series(self.baseline_stats, self.baseline_label),
            "peer": series(self.peer_stats, self.peer_label),
            "ratio": self.ratio,
            "peer_ratio": self.peer_ratio,
            "target": None if self.target is None else asdict(self.target),
            "status": status,
            "missed_because": reasons,
            "count": self.count,
            "errors": self.errors,
            "extra": self.extra,
            "note": self.note,
        }


@dataclass
class ScalePoint:
    """The runtime with ``count`` small workspaces held.

    Attributes:
        count: Workspaces held.
        create_s: Latencies of the creates that brought the count here (seconds).
        raw_create_s: Raw docker create+start latencies taken at this count (seconds).
        rss_bytes: The runtime process's resident memory.
        cpu_idle_pct: The runtime's CPU (% of one core) while idle at this count.
        cpu_busy_pct: The runtime's CPU (% of one core) over the creates that led here.
        ping_s: Ping round trips at this count (seconds).
        raw_ping_s: Raw zmq+msgspec round trips at this count (seconds).
        host_used_bytes: Host memory in use (total - available).
        host_cpu_pct: The host's CPU (% of all cores) over the idle window, system-wide (others' load too).
        workspaces_cpu_pct: The workspaces' cgroups' CPU over the idle window (% of one core, summed).
        workspaces_memory_bytes: The workspaces' cgroups' memory in use (summed).
        errors: Creates that failed on the way here.
    """

    count: int
    create_s: list[float]
    raw_create_s: list[float]
    rss_bytes: int
    cpu_idle_pct: float
    cpu_busy_pct: float
    ping_s: list[float]
    raw_ping_s: list[float]
    host_used_bytes: int
    host_cpu_pct: float = 0.0
    workspaces_cpu_pct: float = 0.0
    workspaces_memory_bytes: int = 0
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        """The point in readable units (ms, MiB, %)."""

        def ms(samples: list[float]) -> dict[str, float] | None:
            value = stats(samples)
            return None if value is None else value.scaled("ms")

        return {
            "count": self.count,
            "create_ms": ms(self.create_s),
            "raw_create_ms": ms(self.raw_create_s),
            "runtime_rss_mib": self.rss_bytes / 2**20,
            "runtime_cpu_idle_pct": self.cpu_idle_pct,
            "runtime_cpu_busy_pct": self.cpu_busy_pct,
            "ping_ms": ms(self.ping_s),
            "raw_ping_ms": ms(self.raw_ping_s),
            "host_used_gib": self.host_used_bytes / 2**30,
            "host_cpu_idle_pct": self.host_cpu_pct,
            "workspaces_cpu_idle_pct_of_core": self.workspaces_cpu_pct,
            "workspaces_memory_mib": self.workspaces_memory_bytes / 2**20,
            "errors": self.errors,
        }
