"""The boards, the alert board's hysteresis, and what samples and disk measurements raise and clear."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from runtime.capacity.admission import Admission
from runtime.messages import AlertCleared, AlertRaised, ProviderStatus
from runtime.monitoring.alerts import AlertBoard
from runtime.monitoring.boards import Boards, ProviderBoard, SampleBoard, Sweeps, Usage, UsageBoard
from runtime.monitoring.sampler import HostSample, Sample, WorkspaceSample
from runtime.monitoring.thresholds import judge_disk, judge_sample


def status(name: str = "gvisor", *, healthy: bool = True, detail: str = "", **more: Any) -> ProviderStatus:
    return ProviderStatus(
        name=name,
        healthy=healthy,
        checked_at=time.time(),
        detail=detail,
        runtime="runsc",
        **more,
    )


def host(**values: float | int | None) -> HostSample:
    """A quiet host (everything at 10%), with ``values`` changed."""
    fields: dict[str, float | int | None] = {
        "cpu_pct": 10.0,
        "mem_pct": 10.0,
        "disk_pct": 10.0,
        "cpus": 8,
        "memory_bytes": 1000 << 20,
        "reserved_cpu": 0.8,
        "reserved_cpu_pct": 10.0,
        "reserved_memory_bytes": 100 << 20,
        "reserved_memory_pct": 10.0,
    }
    fields.update(values)
    return HostSample(**fields)  # type: ignore[arg-type]


def sample(host_sample: HostSample, *workspaces: WorkspaceSample) -> Sample:
    return Sample(host=host_sample, workspaces=list(workspaces), sampled_at=time.time(), took_ms=1.0)


def evaluate(board: AlertBoard, value: float, key: str = "host:cpu") -> AlertRaised | AlertCleared | None:
    return board.evaluate(key, resource="cpu", value=value, threshold=80.0, limit=100.0, message=f"at {value:g}")


# ---------------------------------------------------------------------- ProviderBoard


def test_a_provider_update_says_whether_health_or_detail_changed() -> None:
    board = ProviderBoard()
    assert board.update(status()) is True  # first news
    assert board.update(status(workspaces=3)) is False  # a new check, nothing an operator must hear
    assert board.update(status(healthy=False, detail="the daemon does not answer")) is True
    assert board.update(status(healthy=False, detail="the daemon does not answer")) is False
    assert board.update(status(healthy=False, detail="still down: connection refused")) is True
    assert board.update(status()) is True
    latest = board.get("gvisor")
    assert latest is not None and (latest.healthy, latest.detail) == (True, "")


def test_a_provider_is_unhealthy_until_checked_and_the_board_lists_providers_by_name() -> None:
    board = ProviderBoard()
    assert board.get("gvisor") is None
    assert board.healthy("gvisor") is False
    board.update(status("gvisor"))
    board.update(status("e2b", healthy=False, detail="no API key"))
    board.update(status("firecracker"))
    assert board.healthy("gvisor") and not board.healthy("e2b")
    assert [s.name for s in board.all()] == ["e2b", "firecracker", "gvisor"]


def test_the_data_root_is_the_first_provider_s_that_names_one() -> None:
    board = ProviderBoard()
    assert board.data_root() == ""
    board.update(status("e2b"))
    assert board.data_root() == ""
    board.update(status("gvisor", data_root="/var/lib/docker"))
    board.update(status("firecracker", data_root="/srv/firecracker"))
    assert board.data_root() == "/srv/firecracker"  # by name: firecracker before gvisor


# ---------------------------------------------------------------------- usage, samples, sweeps


def test_usage_updates_keep_the_fields_they_do_not_mention() -> None:
    board = UsageBoard()
    assert board.get("ws_a") is None
    before = time.time()
    board.update("ws_a", disk_used_bytes=500, disk_bytes=1000)
    board.update("ws_a", cpu_pct=12.5, memory_bytes=64 << 20, memory_pct=25.0)
    usage = board.get("ws_a")
    assert usage is not None
    assert msgspec.structs.replace(usage, measured_at=0.0) == Usage(
        disk_used_bytes=500, disk_bytes=1000, cpu_pct=12.5, memory_bytes=64 << 20, memory_pct=25.0
    )
    assert usage.measured_at >= before
    board.update("ws_a", disk_used_bytes=600)
    latest = board.get("ws_a")
    assert latest is not None and latest.measured_at >= usage.measured_at
    assert msgspec.structs.replace(latest, measured_at=0.0) == Usage(
        disk_used_bytes=600, disk_bytes=1000, cpu_pct=12.5, memory_bytes=64 << 20, memory_pct=25.0
    )


def test_usage_of_an_ended_workspace_is_forgotten_and_all_returns_a_copy() -> None:
    board = UsageBoard()
    board.update("ws_a", memory_bytes=1)
    board.update("ws_b", memory_bytes=2)
    everything = board.all()
    everything.pop("ws_a")
    assert set(board.all()) == {"ws_a", "ws_b"}
    board.forget("ws_a")
    board.forget("ws_never_seen")
    assert set(board.all()) == {"ws_b"}
    assert board.get("ws_a") is None


def test_the_sample_board_holds_the_newest_sample() -> None:
    board = SampleBoard()
    assert board.latest() is None
    first, second = sample(host()), sample(host(cpu_pct=50.0))
    board.set(first)
    board.set(second)
    assert board.latest() is second


def test_sweeps_count_sweeps_reaped_workspaces_and_removed_orphans() -> None:
    sweeps = Sweeps(60.0)
    assert sweeps.as_dict() == {"interval_s": 60.0, "last_sweep_at": None, "sweeps": 0, "reaped": 0, "orphans": 0}
    before = time.time()
    sweeps.swept(2)
    sweeps.swept(0)
    sweeps.orphan_removed()
    counters = sweeps.as_dict()
    assert (counters["sweeps"], counters["reaped"], counters["orphans"]) == (2, 2, 1)
    assert counters["last_sweep_at"] is not None and before <= counters["last_sweep_at"] <= time.time()


def test_boards_start_with_empty_pools_and_an_hourly_reaper() -> None:
    boards = Boards(admission=Admission(4))
    assert dict(boards.pools) == {}
    assert boards.sweeps.interval_s == 3600.0
    assert boards.alerts.active() == [] and boards.usage.all() == {} and boards.samples.latest() is None


# ---------------------------------------------------------------------- AlertBoard


def test_an_alert_is_raised_once_at_the_threshold_and_cleared_once_below_the_hysteresis_band() -> None:
    board = AlertBoard(hysteresis=0.05)  # clears below 76
    assert evaluate(board, 79.9) is None
    raised = evaluate(board, 80.0)
    assert raised == AlertRaised(
        key="host:cpu", resource="cpu", message="at 80", value=80.0, limit=100.0, threshold=80.0
    )
    assert evaluate(board, 95.0) is None  # already raised
    assert evaluate(board, 79.0) is None  # within the band
    assert evaluate(board, 76.0) is None  # the band's floor still holds it
    assert evaluate(board, 80.0) is None
    cleared = evaluate(board, 75.9)
    assert cleared == AlertCleared(
        key="host:cpu", resource="cpu", message="at 75.9", value=75.9, limit=100.0, threshold=80.0
    )
    assert evaluate(board, 50.0) is None  # already cleared
    assert evaluate(board, 79.0) is None  # below the threshold: not raised again
    again = evaluate(board, 81.0)
    assert isinstance(again, AlertRaised) and again.value == 81.0


def test_the_hysteresis_band_is_configurable() -> None:
    board = AlertBoard(hysteresis=0.5)  # clears below 40
    assert isinstance(evaluate(board, 80.0), AlertRaised)
    assert evaluate(board, 40.0) is None
    assert isinstance(evaluate(board, 39.0), AlertCleared)


def test_alerts_are_kept_per_key() -> None:
    board = AlertBoard()
    assert isinstance(evaluate(board, 90.0, "host:cpu"), AlertRaised)
    assert isinstance(evaluate(board, 90.0, "reserved:cpu"), AlertRaised)
    assert isinstance(evaluate(board, 10.0, "host:cpu"), AlertCleared)
    assert [alert.key for alert in board.active()] == ["reserved:cpu"]


def test_active_lists_alerts_oldest_first_with_the_time_they_were_raised() -> None:
    board = AlertBoard()
    before = time.time()
    for key in ("memory:ws_b", "host:cpu", "cpu:ws_a"):
        evaluate(board, 90.0, key)
    evaluate(board, 10.0, "host:cpu")
    evaluate(board, 90.0, "host:cpu")  # raised anew: now the newest
    active = board.active()
    assert [alert.key for alert in active] == ["memory:ws_b", "cpu:ws_a", "host:cpu"]
    assert all(before <= alert.ts <= time.time() for alert in active)
    assert [alert.ts for alert in active] == sorted(alert.ts for alert in active)


def test_clearing_an_alert_whose_subject_is_gone_keeps_what_it_was_about() -> None:
    board = AlertBoard()
    board.evaluate(
        "memory:ws_a", resource="memory", value=95.0, threshold=80.0, limit=100.0, message="m", workspace_id="ws_a"
    )
    cleared = board.clear("memory:ws_a", "workspace ws_a is no longer running")
    assert cleared == AlertCleared(
        key="memory:ws_a",
        resource="memory",
        message="workspace ws_a is no longer running",
        value=0.0,
        limit=100.0,
        workspace_id="ws_a",
        threshold=80.0,
    )
    assert board.active() == []
    assert board.clear("memory:ws_a", "again") is None
    assert board.clear("never:raised", "nothing") is None


# ---------------------------------------------------------------------- judge_sample


def test_a_quiet_sample_raises_nothing_but_records_each_workspace_s_usage() -> None:
    alerts, usage = AlertBoard(), UsageBoard()
    quiet = sample(host(), WorkspaceSample("ws_a", cpu_pct=None, memory_bytes=10 << 20, memory_pct=10.0))
    assert judge_sample(quiet, alerts, usage, 80.0) == []
    recorded = usage.get("ws_a")
    assert recorded is not None
    assert (recorded.cpu_pct, recorded.memory_bytes, recorded.memory_pct) == (None, 10 << 20, 10.0)
    assert alerts.active() == []


def test_a_busy_sample_raises_host_reserved_and_workspace_alerts_with_their_messages() -> None:
    alerts, usage = AlertBoard(), UsageBoard()
    busy = sample(
        host(
            cpu_pct=85.0,
            disk_pct=90.0,
            reserved_cpu=6.8,
            reserved_cpu_pct=85.0,
            reserved_memory_bytes=900 << 20,
            reserved_memory_pct=90.0,
        ),
        WorkspaceSample("ws_a", cpu_pct=None, memory_bytes=95 << 20, memory_pct=95.0),
        WorkspaceSample("ws_b", cpu_pct=120.0, memory_bytes=10 << 20, memory_pct=10.0),
    )
    changes = judge_sample(busy, alerts, usage, 80.0)
    assert all(isinstance(change, AlertRaised) for change in changes)
    assert [(c.key, c.resource, c.value, c.workspace_id) for c in changes] == [
        ("host:cpu", "cpu", 85.0, None),
        ("host:disk", "disk", 90.0, None),
        ("reserved:cpu", "cpu", 85.0, None),
        ("reserved:memory", "memory", 90.0, None),
        ("memory:ws_a", "memory", 95.0, "ws_a"),
        ("cpu:ws_b", "cpu", 120.0, "ws_b"),
    ]
    messages = {change.key: change.message for change in changes}
    assert messages == {
        "host:cpu": "the host's CPU is at 85% (threshold 80%)",
        "host:disk": "Docker's disk is 90% full (threshold 80%)",
        "reserved:cpu": "workspaces reserve 6.8 CPUs, 85% of the host's 8 (threshold 80%)",
        "reserved:memory": "workspaces reserve 900 MiB of memory, 90% of the host's 1000 MiB (threshold 80%)",
        "memory:ws_a": "workspace ws_a uses 95 MiB, 95% of its memory limit (threshold 80%)",
        "cpu:ws_b": "workspace ws_b uses 120% of its CPU limit (threshold 80%)",
    }
    assert all((c.threshold, c.limit) == (80.0, 100.0) for c in changes)
    assert judge_sample(busy, alerts, usage, 80.0) == []  # the same sample again: nothing new
    memory = usage.get("ws_a")
    cpu = usage.get("ws_b")
    assert memory is not None and memory.memory_pct == 95.0
    assert cpu is not None and cpu.cpu_pct == 120.0


def test_a_host_memory_alert_and_an_unmeasured_disk() -> None:
    alerts = AlertBoard()
    changes = judge_sample(sample(host(mem_pct=99.4, disk_pct=None)), alerts, UsageBoard(), 90.0)
    assert [(c.key, c.message) for c in changes] == [("host:memory", "the host's memory is at 99% (threshold 90%)")]
    assert "host:disk" not in {alert.key for alert in alerts.active()}


def test_per_workspace_alerts_clear_when_the_workspace_leaves_the_sample_but_disk_alerts_stay() -> None:
    alerts, usage = AlertBoard(), UsageBoard()
    hot = [
        WorkspaceSample("ws_a", cpu_pct=99.0, memory_bytes=90 << 20, memory_pct=90.0),
        WorkspaceSample("ws_b", cpu_pct=None, memory_bytes=90 << 20, memory_pct=90.0),
    ]
    assert len(judge_sample(sample(host(), *hot), alerts, usage, 80.0)) == 3
    judge_disk("ws_a", 900, 1000, alerts, usage, threshold_pct=80.0)
    changes = judge_sample(sample(host(), hot[1]), alerts, usage, 80.0)  # ws_a ended
    assert all(isinstance(change, AlertCleared) for change in changes)
    assert sorted((c.key, c.message, c.value) for c in changes) == [
        ("cpu:ws_a", "workspace ws_a is no longer running", 0.0),
        ("memory:ws_a", "workspace ws_a is no longer running", 0.0),
    ]
    assert sorted(alert.key for alert in alerts.active()) == ["disk:ws_a", "memory:ws_b"]


def test_a_workspace_whose_cpu_rate_is_unknown_this_round_keeps_its_cpu_alert() -> None:
    alerts, usage = AlertBoard(), UsageBoard()
    judge_sample(sample(host(), WorkspaceSample("ws_a", 99.0, 1, 1.0)), alerts, usage, 80.0)
    assert judge_sample(sample(host(), WorkspaceSample("ws_a", None, 1, 1.0)), alerts, usage, 80.0) == []
    assert [alert.key for alert in alerts.active()] == ["cpu:ws_a"]


def test_a_workspace_falling_below_the_band_clears_its_alert_with_the_new_value() -> None:
    alerts, usage = AlertBoard(), UsageBoard()
    judge_sample(sample(host(), WorkspaceSample("ws_a", None, 90 << 20, 90.0)), alerts, usage, 80.0)
    hovering = judge_sample(sample(host(), WorkspaceSample("ws_a", None, 78 << 20, 78.0)), alerts, usage, 80.0)
    assert hovering == []
    changes = judge_sample(sample(host(), WorkspaceSample("ws_a", None, 50 << 20, 50.0)), alerts, usage, 80.0)
    assert [(type(c), c.key, c.value) for c in changes] == [(AlertCleared, "memory:ws_a", 50.0)]


# ---------------------------------------------------------------------- judge_disk


def test_disk_use_raises_at_the_share_of_the_budget_and_clears_below_the_band() -> None:
    alerts, usage = AlertBoard(), UsageBoard()
    assert judge_disk("ws_a", 799, 1000, alerts, usage, threshold_pct=80.0) is None
    recorded = usage.get("ws_a")
    assert recorded is not None and (recorded.disk_used_bytes, recorded.disk_bytes) == (799, 1000)
    raised = judge_disk("ws_a", 800, 1000, alerts, usage, threshold_pct=80.0)
    assert raised == AlertRaised(
        key="disk:ws_a",
        resource="disk",
        message="workspace ws_a uses 800 bytes of disk, 80% of its budget of 1000 (threshold 80%)",
        value=800.0,
        limit=1000.0,
        workspace_id="ws_a",
        threshold=800.0,
    )
    assert judge_disk("ws_a", 1200, 1000, alerts, usage, threshold_pct=80.0) is None
    assert judge_disk("ws_a", 760, 1000, alerts, usage, threshold_pct=80.0) is None  # 800 * 0.95
    cleared = judge_disk("ws_a", 759, 1000, alerts, usage, threshold_pct=80.0)
    assert isinstance(cleared, AlertCleared)
    assert (cleared.key, cleared.value) == ("disk:ws_a", 759.0)
    assert cleared.message == "workspace ws_a uses 759 bytes of disk, 76% of its budget of 1000 (threshold 80%)"
    recorded = usage.get("ws_a")
    assert recorded is not None and recorded.disk_used_bytes == 759


@pytest.mark.parametrize(
    ("threshold_pct", "used", "raises"), [(50.0, 499, False), (50.0, 500, True), (100.0, 999, False)]
)
def test_the_disk_threshold_follows_the_configured_percentage(threshold_pct: float, used: int, raises: bool) -> None:
    change = judge_disk("ws_a", used, 1000, AlertBoard(), UsageBoard(), threshold_pct=threshold_pct)
    assert isinstance(change, AlertRaised) if raises else change is None
