"""The run's report: ``results.json`` (everything, machine-readable) and ``results.md`` (the tables).

Every scenario's p50/p90/p99/max/n for ours, the baseline and the peer, the ratio (our
p50 over the baseline's), the target and its verdict (met or missed, with why). Then
the scale curve, the host sizing, the machine, and whatever went wrong. A missed
target is written down, never raised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.machine import one_line
from bench.harness.results import SCALE, ScalePoint, Scenario, Stats

__all__ = ["Run", "markdown", "to_json", "write"]


@dataclass
class Run:
    """One harness run, as reported."""

    mode: str
    started_at: str
    duration_s: float
    machine: dict[str, Any]
    command: str
    scenarios: list[Scenario] = field(default_factory=list)
    scale: list[ScalePoint] = field(default_factory=list)
    scale_info: dict[str, Any] = field(default_factory=dict)
    sizing: dict[str, Any] = field(default_factory=dict)
    peer: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def to_json(run: Run) -> dict[str, Any]:
    """The whole run as plain data."""
    scenarios = [scenario.to_json() for scenario in run.scenarios]
    return {
        "mode": run.mode,
        "command": run.command,
        "started_at": run.started_at,
        "duration_s": round(run.duration_s, 1),
        "machine": run.machine,
        "peer": run.peer,
        "scenarios": scenarios,
        "targets": [
            {"scenario": s["name"], "target": s["target"]["text"], "status": s["status"], "why": s["missed_because"]}
            for s in scenarios
            if s["target"] is not None
        ],
        "scale": {**run.scale_info, "points": [point.to_json() for point in run.scale]},
        "host_sizing": run.sizing,
        "scenario_seconds": {name: round(value, 1) for name, value in run.timings_s.items()},
        "failures": run.failures,
        "notes": run.notes,
    }


def _number(number: float) -> str:
    return f"{number:.3g}" if number < 100 else f"{number:.0f}"


def _value(value: Stats | None, unit: str, attr: str = "p50") -> str:
    return "" if value is None else _number(getattr(value, attr) * SCALE[unit])


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _scenario_table(scenarios: list[Scenario]) -> list[str]:
    lines = [
        "| scenario | unit | ours p50 | p90 | p99 | max | n | baseline p50 | ratio | peer p50 | ours/peer | target |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for scenario in scenarios:
        ours, base, peer, unit = scenario.ours_stats, scenario.baseline_stats, scenario.peer_stats, scenario.unit
        status, reasons = scenario.verdict()
        verdict = "" if scenario.target is None else f"**{status}**" + (f" ({'; '.join(reasons)})" if reasons else "")
        cells = [
            scenario.name, unit.replace("us", "µs"), _value(ours, unit), _value(ours, unit, "p90"),
            _value(ours, unit, "p99"), _value(ours, unit, "max"), str(ours.n if ours else 0), _value(base, unit),
            _ratio(scenario.ratio), _value(peer, unit), _ratio(scenario.peer_ratio), verdict,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _baselines(scenarios: list[Scenario]) -> list[str]:
    seen: dict[str, str] = {}
    for scenario in scenarios:
        detail = f"baseline: {scenario.baseline_label}" if scenario.baseline_label else "no baseline"
        if scenario.peer_label:
            detail += f"; peer: {scenario.peer_label}"
        if scenario.note:
            detail += f"; {scenario.note}"
        seen[scenario.name] = detail
    return [f"- **{name}**: {detail}" for name, detail in seen.items()]


def _scale_table(points: list[ScalePoint]) -> list[str]:
    lines = [
        "| held | create p50 (ms) | create p99 | raw create p50 | runtime RSS (MiB) | runtime CPU idle (% core) "
        "| creating | ping p50 (µs) | ping p99 (µs) | raw ping p99 (µs) | host memory used (GiB) "
        "| host CPU idle (% all) | workspaces' CPU idle (% core) | errors |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for point in points:
        data = point.to_json()

        def get(key: str, attr: str, scale: float = 1.0, data: dict[str, Any] = data) -> str:
            series = data[key]
            return "" if series is None else _number(series[attr] * scale)

        lines.append(
            f"| {point.count} | {get('create_ms', 'p50')} | {get('create_ms', 'p99')} | {get('raw_create_ms', 'p50')} "
            f"| {data['runtime_rss_mib']:.0f} | {point.cpu_idle_pct:.1f} | {point.cpu_busy_pct:.1f} "
            f"| {get('ping_ms', 'p50', 1e3)} | {get('ping_ms', 'p99', 1e3)} | {get('raw_ping_ms', 'p99', 1e3)} "
            f"| {data['host_used_gib']:.1f} | {point.host_cpu_pct:.0f} | {point.workspaces_cpu_pct:.1f} "
            f"| {point.errors} |"
        )
    return lines


def _sizing(sizing: dict[str, Any]) -> list[str]:
    if not sizing.get("measured"):
        return [f"Not measured: {sizing.get('why', 'no scale run')}."]
    held, saturated = sizing["held"], sizing.get("host_cpu_saturated_at")
    host_cpu = f"host CPU system-wide {sizing['host_cpu_idle_pct_at_held']:.0f}% at {held}"
    if saturated:
        host_cpu += f", saturated from {saturated} idle workspaces on"
    lines = [
        f"From the scale run: {held} small workspaces held, `ping` p99 {sizing['ping_p99_ms_at_held']:.2f} ms, "
        f"runtime CPU idle {sizing['runtime_cpu_idle_pct_at_held']:.1f}% of a core. Each idle workspace costs "
        f"{sizing['footprint_mib_per_workspace']:.0f} MiB of host memory (gVisor sandbox, gofer, shim, agent; its "
        f"cgroup holds {sizing['workspaces_memory_mib_per_workspace']:.0f} MiB), "
        f"{sizing['host_cpu_millicores_per_idle_workspace']:.1f} millicores of CPU while idle (read from its cgroup; "
        f"the highest per workspace of the scale points; {host_cpu}) and {sizing['runtime_rss_kib_per_workspace']:.0f} "
        f"KiB of the runtime's RSS. Reserve: {sizing['reserve']}.",
        "",
        "| machine | default 2 CPU/4G: guaranteed | memory-bound | seed's estimate | small 256M: guaranteed "
        "| memory-bound | idle footprint bound (memory / CPU) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in sizing["machines"]:
        lines.append(
            f"| {row['machine']} | {row['default_guaranteed']} | {row['default_memory_bound']} "
            f"| {row['seed_default'] or '-'} | {row['small_guaranteed']} | {row['small_memory_bound']} "
            f"| {row['small_idle_footprint_bound']} ({row['small_idle_memory_bound']} / "
            f"{row['small_idle_cpu_bound'] or '-'}) |"
        )
    rules = sizing["rules"]
    lines += [
        "",
        f"- guaranteed: {rules['guaranteed']} (small: 0.25 CPU each);",
        f"- memory-bound: {rules['memory_bound']};",
        f"- idle footprint bound: {rules['idle_footprint_bound']}, only as far as the runtime keeps up "
        "(measured here up to the count held).",
        "- `WORKSPACE_MAX_CONCURRENT` (default 10) must be raised to hold more than 10.",
    ]
    return lines


def markdown(run: Run) -> str:
    """The report as Markdown."""
    lines = [
        f"# Benchmarks ({run.mode} run)",
        "",
        f"`{run.command}`, {run.started_at}, {run.duration_s / 60:.1f} min on {one_line(run.machine)}.",
        "Every scenario ran beside its raw baseline (and the peer, where it has one) in this run, interleaved; "
        "ratio = our p50 / the baseline's p50 (below 1: faster). A missed target is information, not a failure.",
        "",
        "## Scenarios",
        "",
        *_scenario_table(run.scenarios),
        "",
        *_baselines(run.scenarios),
        "",
        "## Targets",
        "",
    ]
    for scenario in run.scenarios:
        if scenario.target is not None:
            status, reasons = scenario.verdict()
            why = f": {'; '.join(reasons)}" if reasons else ""
            lines.append(f"- {scenario.name}: {scenario.target.text} - **{status}**{why}")
    lines += ["", "## Scale", ""]
    if run.scale:
        info = run.scale_info
        lines += [
            f"Small workspaces ({info.get('memory_bytes', 0) >> 20}M, {info.get('cpu')} CPU), created one at a "
            f"time by one runtime (runsc); held {info.get('held')}, errors {info.get('errors')}"
            + (f", stopped early: {info['stopped_early']}" if info.get("stopped_early") else "")
            + ".",
            "",
            *_scale_table(run.scale),
        ]
    else:
        lines.append("Not run.")
    lines += ["", "## Host sizing", "", *_sizing(run.sizing), "", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in run.machine.items()]
    lines += ["", "## Peer", ""]
    lines += [f"- {key}: {value}" for key, value in run.peer.items()]
    if run.failures or run.notes:
        lines += ["", "## Problems and notes", ""]
        lines += [f"- scenario `{failure['scenario']}` failed: {failure['error']}" for failure in run.failures]
        lines += [f"- {note}" for note in run.notes]
    if run.timings_s:
        lines += ["", "Time per scenario family: " + ", ".join(f"{k} {v:.0f} s" for k, v in run.timings_s.items())]
    return "\n".join(lines) + "\n"


def write(run: Run, out: Path) -> list[Path]:
    """Write ``results.json`` and ``results.md`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(to_json(run), indent=2) + "\n")
    md_path.write_text(markdown(run))
    return [json_path, md_path]
