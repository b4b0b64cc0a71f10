"""The run's charts: ``latency.png`` (every scenario, ours beside baseline and peer) and ``scale.png``.

matplotlib with the Agg backend (no display needed). Latencies span microseconds to
seconds, so ``latency.png`` draws p50 bars on a log axis, in milliseconds, with a
whisker to p90. ``scale.png`` draws what the scale run measured against the count held.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.harness.machine import one_line
from bench.harness.results import ScalePoint, Scenario, percentile

__all__ = ["latency_chart", "scale_chart", "write"]

SERIES = (("ours", "agent-workspaces", "#1f77b4"), ("baseline", "raw baseline", "#7f7f7f"),
          ("peer", "peer (llm-sandbox)", "#ff7f0e"))  # fmt: skip


def latency_chart(scenarios: list[Scenario], path: Path, title: str) -> Path:
    """Grouped horizontal bars: p50 of ours, the baseline and the peer per scenario, whiskers to p90."""
    rows = [s for s in scenarios if s.ours]
    height = max(3.0, 0.55 * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(11, height))
    width = 0.27
    for offset, (attr, label, color) in enumerate(SERIES):
        ys, p50s, spans = [], [], []
        for index, scenario in enumerate(rows):
            value = getattr(scenario, f"{attr}_stats")
            if value is None:
                continue
            ys.append(index + (offset - 1) * width)
            p50s.append(value.p50 * 1e3)
            spans.append(max(0.0, value.p90 - value.p50) * 1e3)
        if ys:
            ax.barh(ys, p50s, height=width, color=color, label=label,
                    xerr=[[0.0] * len(spans), spans], error_kw={"elinewidth": 0.8, "capsize": 2})  # fmt: skip
    for index, scenario in enumerate(rows):  # the ratio and the verdict beside each group
        tops = [v.p90 * 1e3 for v in (scenario.ours_stats, scenario.baseline_stats, scenario.peer_stats) if v]
        status, _ = scenario.verdict()
        label = "" if scenario.ratio is None else f"{scenario.ratio:.2g}x raw"
        label += "" if status == "-" else f" ({status})"
        if label:
            color = {"met": "#2ca02c", "missed": "#d62728"}.get(status, "#333333")
            ax.text(max(tops) * 1.25, index, label.strip(), va="center", fontsize=7, color=color)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([s.name for s in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    left, right = ax.get_xlim()
    ax.set_xlim(left, right * 12)  # room for the labels
    ax.set_xlabel("p50 latency, ms (log scale; whisker to p90)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(samples: list[float], pct: float) -> float:
    return percentile(samples, pct) * 1e3 if samples else float("nan")


def scale_chart(points: list[ScalePoint], path: Path, title: str) -> Path:
    """Create latency, runtime RSS, runtime CPU, ping, host memory against the workspaces held."""
    counts = [p.count for p in points]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    grow = [p for p in points if p.create_s]
    ax = axes[0][0]
    ax.plot([p.count for p in grow], [_ms(p.create_s, 50) for p in grow], "o-", label="create p50")
    ax.plot([p.count for p in grow], [_ms(p.create_s, 99) for p in grow], "o--", label="create p99")
    ax.plot(counts, [_ms(p.raw_create_s, 50) for p in points], "s:", color="#7f7f7f", label="raw create+start p50")
    ax.set(title="create latency", ylabel="ms")
    ax = axes[0][1]
    ax.plot(counts, [p.rss_bytes / 2**20 for p in points], "o-")
    ax.set(title="runtime RSS", ylabel="MiB")
    ax = axes[0][2]
    ax.plot(counts, [p.cpu_idle_pct for p in points], "o-", label="idle")
    ax.plot(counts, [p.cpu_busy_pct for p in points], "o--", label="while creating")
    ax.set(title="runtime CPU", ylabel="% of one core")
    ax = axes[1][0]
    ax.plot(counts, [_ms(p.ping_s, 50) for p in points], "o-", label="ping p50")
    ax.plot(counts, [_ms(p.ping_s, 99) for p in points], "o--", label="ping p99")
    ax.plot(counts, [_ms(p.raw_ping_s, 99) for p in points], "s:", color="#7f7f7f", label="raw echo p99")
    ax.axhline(5.0, color="#d62728", linewidth=0.8, label="target p99 5 ms")
    ax.set(title="ping round trip", ylabel="ms (log)", yscale="log")
    ax = axes[1][1]
    ax.plot(counts, [p.host_used_bytes / 2**30 for p in points], "o-")
    ax.set(title="host memory in use", ylabel="GiB")
    ax = axes[1][2]
    ax.plot(counts, [p.host_cpu_pct for p in points], "o-", label="host, system-wide (% of all cores)")
    ax.plot(counts, [p.workspaces_cpu_pct for p in points], "o--", label="the workspaces' cgroups (% of one core)")
    ax.set(title="CPU while the workspaces idle", ylabel="%")
    if len(points) > 1 and points[-1].count:
        per = (points[-1].host_used_bytes - points[0].host_used_bytes) / points[-1].count / 2**20
        title += f"\n{points[-1].count} held, {per:.0f} MiB host memory per workspace, {points[-1].errors} errors"
    for row in axes:
        for ax in row:
            if ax.has_data():
                ax.set_xlabel("workspaces held")
                ax.grid(alpha=0.3)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(scenarios: list[Scenario], points: list[ScalePoint], machine: dict[str, Any], mode: str,
          out: Path) -> list[Path]:  # fmt: skip
    """Both charts into ``out`` (``scale.png`` only when the scale scenario ran)."""
    out.mkdir(parents=True, exist_ok=True)
    title = f"{mode} run - {one_line(machine)}"
    written = [latency_chart(scenarios, out / "latency.png", title)]
    if points:
        written.append(scale_chart(points, out / "scale.png", title))
    return written
