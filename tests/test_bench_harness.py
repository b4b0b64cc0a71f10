"""The benchmark harness's report, charts, targets and sizing, from synthetic results (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from bench.harness import charts, report, run, sizing
from bench.harness.context import Context
from bench.harness.report import Run
from bench.harness.results import ScalePoint, Scenario, Target, percentile
from bench.harness.scenarios import scale

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GiB = 1 << 30
MACHINE: dict[str, Any] = {
    "cpus": 2,
    "physical_cores": 2,
    "cpu_model": "Test CPU",
    "memory_bytes": 24 * GiB,
    "memory_gib": 24.0,
    "kernel": "6.1.0-test",
    "os": "Linux-test",
    "python": "3.11.7",
    "docker": "20.10.24",
    "runsc": "release-20240729.0",
}


def ms(*values: float) -> list[float]:
    return [value / 1e3 for value in values]


def exec_scenario(ours_ms: float, raw_ms: float) -> Scenario:
    return Scenario(
        name="exec true (runsc)",
        group="exec",
        ours=ms(*([ours_ms] * 20)),
        baseline=ms(*([raw_ms] * 20)),
        peer=ms(*([88.0] * 5)),
        baseline_label="raw exec_run",
        peer_label="llm-sandbox 0.3.46 execute_command",
        target=Target("p50 <= 10 ms and >= 8x faster than raw exec_run", p50_max_s=0.010, speedup_min=8),
    )


def scale_points() -> list[ScalePoint]:
    points = []
    for count in (0, 50, 100, 200):
        points.append(
            ScalePoint(
                count=count,
                create_s=ms(400, 450, 500, 900) if count else [],
                raw_create_s=ms(380, 420),
                rss_bytes=(80 << 20) + count * (100 << 10),
                cpu_idle_pct=0.5 + count / 100,
                cpu_busy_pct=2.0 if count else 0.0,
                ping_s=ms(*([0.03] * 98), 0.2, 1.0),
                raw_ping_s=ms(*([0.02] * 100)),
                host_used_bytes=GiB + count * (30 << 20),
                host_cpu_pct=2.0 + count * 0.05,
                workspaces_cpu_pct=count * 0.1,  # 1 millicore per idle workspace
                workspaces_memory_bytes=count * (20 << 20),
            )
        )
    return points


def synthetic_run() -> Run:
    destroy = Scenario(
        name="destroy (runsc)",
        group="lifecycle",
        ours=ms(150, 160, 170),
        baseline=ms(100, 110, 120),
        baseline_label="raw remove(force=True) + volume remove",
        target=Target("destroy p50 <= 1.1x raw", ratio_max=1.1),
    )
    ping = Scenario(name="ping, 1 client", group="wire", unit="us", ours=ms(0.02, 0.025, 0.03), baseline=ms(0.02))
    points = scale_points()
    return Run(
        mode="quick",
        started_at="2026-01-01 00:00 UTC",
        duration_s=75.0,
        machine=MACHINE,
        command="python -m bench --quick",
        scenarios=[exec_scenario(4.0, 45.0), destroy, ping],
        scale=points,
        scale_info={"cpu": 0.25, "memory_bytes": 256 << 20, "held": 200, "errors": 0, "stopped_early": None},
        sizing=sizing.host_sizing(MACHINE, points),
        peer={"name": "llm-sandbox", "version": "0.3.46", "available": True},
        notes=["a note"],
    )


def test_a_target_of_p50_and_speedup_is_met_only_when_both_hold() -> None:
    assert exec_scenario(4.0, 45.0).verdict() == ("met", [])
    status, reasons = exec_scenario(12.0, 200.0).verdict()
    assert status == "missed" and reasons == ["p50 12 ms > 10 ms"]
    status, reasons = exec_scenario(8.0, 45.0).verdict()
    assert status == "missed" and reasons == ["5.6x faster < 8x faster"]


def test_a_ratio_target_compares_our_p50_with_the_baselines() -> None:
    scenario = Scenario(name="destroy", group="lifecycle", ours=ms(105), baseline=ms(100))
    assert Target("x", ratio_max=1.1).check(scenario) == (True, [])
    scenario.ours = ms(120)
    assert Target("x", ratio_max=1.1).check(scenario) == (False, ["ratio 1.20x > 1.1x"])


def test_a_target_without_a_baseline_or_samples_is_missed_not_raised() -> None:
    assert Target("x", ratio_max=1.2).check(Scenario(name="a", group="g", ours=ms(1))) == (False, ["no baseline"])
    assert Target("x", p50_max_s=1).check(Scenario(name="a", group="g")) == (False, ["no sample of ours"])


def test_the_scale_target_needs_the_count_held_no_error_and_the_p99() -> None:
    target = Target("200 held, p99 <= 5 ms, no error", p99_max_s=0.005, count_min=200, errors_max=0)
    good = Scenario(name="scale", group="scale", ours=ms(*([0.03] * 99), 4.0), count=200)
    assert target.check(good) == (True, [])
    bad = Scenario(name="scale", group="scale", ours=ms(*([0.03] * 98), 6.0, 7.0), count=20, errors=1)
    met, reasons = target.check(bad)
    assert not met
    assert reasons == ["p99 6 ms > 5 ms", "held 20 < 200", "1 errors > 0"]


def test_percentiles_take_the_nearest_rank() -> None:
    samples = list(range(1, 101))
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([3.0], 99) == 3.0


def test_idle_cpu_per_workspace_is_taken_before_the_host_saturates() -> None:
    points = scale_points()
    points[-1].workspaces_cpu_pct = 10.0  # 200 idle on a saturated host: 0.5 millicore each
    points[-1].host_cpu_pct = 100.0
    result = sizing.host_sizing(MACHINE, points)
    assert result["host_cpu_millicores_per_idle_workspace"] == pytest.approx(1.0)  # from the 50 and 100 points
    assert result["host_cpu_saturated_at"] == 200


def test_the_json_report_holds_every_scenarios_numbers_target_and_verdict(tmp_path: Path) -> None:
    written = report.write(synthetic_run(), tmp_path)
    assert [path.name for path in written] == ["results.json", "results.md"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["machine"]["runsc"] == "release-20240729.0"
    exec_true, destroy, ping = data["scenarios"]
    for key in ("p50", "p90", "p99", "max", "n"):
        assert key in exec_true["ours"] and key in exec_true["baseline"] and key in exec_true["peer"]
    assert exec_true["ours"]["p50"] == pytest.approx(4.0)
    assert exec_true["ratio"] == pytest.approx(4 / 45)
    assert exec_true["status"] == "met" and exec_true["target"]["speedup_min"] == 8
    assert destroy["status"] == "missed" and destroy["missed_because"] == ["ratio 1.45x > 1.1x"]
    assert ping["unit"] == "us" and ping["ours"]["p50"] == pytest.approx(25.0) and ping["status"] == "-"
    assert {t["scenario"]: t["status"] for t in data["targets"]} == {
        "exec true (runsc)": "met",
        "destroy (runsc)": "missed",
    }
    assert [point["count"] for point in data["scale"]["points"]] == [0, 50, 100, 200]
    assert data["host_sizing"]["measured"] and data["host_sizing"]["held"] == 200


def test_the_markdown_report_has_the_table_targets_scale_and_host_sizing(tmp_path: Path) -> None:
    report.write(synthetic_run(), tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "| exec true (runsc) | ms | 4 |" in text
    assert "**missed** (ratio 1.45x > 1.1x)" in text
    for section in ("## Scenarios", "## Targets", "## Scale", "## Host sizing", "## Machine", "## Peer"):
        assert section in text
    assert "| 8 CPU / 32 GB |" in text and "| 1-5 |" in text and "| 10-20 |" in text


def test_the_charts_are_png_files(tmp_path: Path) -> None:
    run_ = synthetic_run()
    written = charts.write(run_.scenarios, run_.scale, MACHINE, "quick", tmp_path)
    assert [path.name for path in written] == ["latency.png", "scale.png"]
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_without_a_scale_run_only_the_latency_chart_is_drawn(tmp_path: Path) -> None:
    written = charts.write([exec_scenario(4.0, 45.0)], [], MACHINE, "full", tmp_path)
    assert [path.name for path in written] == ["latency.png"]


def test_host_sizing_follows_the_measured_footprint_and_the_limits() -> None:
    result = sizing.host_sizing(MACHINE, scale_points())
    assert result["footprint_mib_per_workspace"] == pytest.approx(30)
    this_host, small_seed, large_seed = result["machines"]
    assert this_host["default_guaranteed"] == 1  # 2 CPUs / 2 CPU each
    assert this_host["default_memory_bound"] == 5  # (24 GiB - 10% reserve) / 4 GiB
    assert small_seed["seed_default"] == "1-5" and small_seed["default_guaranteed"] == 4
    assert large_seed["seed_default"] == "10-20" and large_seed["default_guaranteed"] == 16
    assert result["host_cpu_millicores_per_idle_workspace"] == pytest.approx(1.0)
    assert result["host_cpu_saturated_at"] is None
    assert this_host["small_idle_memory_bound"] == sizing.usable(24 * GiB) // (30 << 20) == 737
    assert this_host["small_idle_cpu_bound"] == 1000  # half of 2 cores / 1 millicore
    assert this_host["small_idle_footprint_bound"] == 737
    assert large_seed["small_idle_cpu_bound"] == 16000  # half of 32 cores / 1 millicore
    assert large_seed["small_idle_footprint_bound"] == large_seed["small_idle_memory_bound"]


def test_a_run_whose_targets_are_missed_exits_zero_and_writes_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missed(ctx: Context) -> list[Scenario]:
        ctx.notes.append("synthetic")
        return [Scenario(name="destroy", group="g", ours=ms(200), baseline=ms(100), target=Target("t", ratio_max=1.1))]

    monkeypatch.setattr(run, "FAMILIES", {"synthetic": missed})
    monkeypatch.setattr(run, "describe", lambda: MACHINE)
    monkeypatch.setattr(run, "sweep", lambda label: 0)
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["targets"] == [
        {"scenario": "destroy", "target": "t", "status": "missed", "why": ["ratio 2.00x > 1.1x"]}
    ]
    assert (tmp_path / "latency.png").read_bytes()[:8] == PNG_MAGIC


def test_a_scenario_family_that_crashes_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(ctx: Context) -> list[Scenario]:
        raise RuntimeError("docker went away")

    def fine(ctx: Context) -> list[Scenario]:
        return [Scenario(name="ok", group="g", ours=ms(1), baseline=ms(1))]

    monkeypatch.setattr(run, "FAMILIES", {"crash": crash, "fine": fine})
    monkeypatch.setattr(run, "describe", lambda: MACHINE)
    monkeypatch.setattr(run, "sweep", lambda label: 0)
    assert run.main(["--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["failures"] == [{"scenario": "crash", "error": "RuntimeError: docker went away"}]
    assert [s["name"] for s in data["scenarios"]] == ["ok"]
    assert "docker went away" in (tmp_path / "results.md").read_text()


class _Created:
    def __init__(self, id: str) -> None:
        self.id = id


class _SlowDaemon:
    """A client whose creates move the clock on by a minute each (a host past its CPU limit)."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.made = 0

    def create(self, **_: Any) -> _Created:
        self.clock[0] += 60
        self.made += 1
        return _Created(f"ws_{self.made}")


class _QuietProbe:
    process = psutil.Process()

    def point(self, count: int, *_: Any) -> SimpleNamespace:
        return SimpleNamespace(count=count)

    def raw_create(self) -> float:
        return 0.1


def test_growing_stops_when_its_time_budget_runs_out_and_says_where(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(scale, "_now", lambda: clock[0])
    grow = scale._Growth(Context(), _SlowDaemon(clock), _QuietProbe())  # type: ignore[arg-type]
    point = grow.to(200)
    assert point.count == len(grow.made) == 9  # 480 s of one-minute creates, the ninth past the budget
    assert grow.stopped == "the growth's time budget (480 s) ran out at 9 held"
