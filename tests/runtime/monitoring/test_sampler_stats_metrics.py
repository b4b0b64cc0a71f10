"""The sampler on a fake provider, the stats snapshot, the metrics collector and the log formats."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import runtime.monitoring.sampler as sampler_module
from runtime.capacity.admission import Admission
from runtime.capacity.pool import Pool
from runtime.messages import ProviderStatus, ResourceUsage, StoredWorkspace, WorkspaceRecord, WorkspaceSpec
from runtime.monitoring.boards import Boards
from runtime.monitoring.logs import JsonFormatter, configure
from runtime.monitoring.metrics import Metrics
from runtime.monitoring.sampler import HostSample, Sample, Sampler, WorkspaceSample, disk_pct
from runtime.monitoring.stats import snapshot
from runtime.state.statelog import StateLog
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider

MiB = 1 << 20


def stored(
    workspace_id: str,
    state: str = "ready",
    *,
    cpu: float = 1.0,
    memory: int = 100 * MiB,
    provider: str = "gvisor",
    handle: str | None = None,
    pooled: bool = False,
) -> StoredWorkspace:
    record = WorkspaceRecord(
        id=workspace_id,
        state=state,  # type: ignore[arg-type]
        provider=provider,
        runtime="runsc",
        image="img",
        cpu=cpu,
        memory_bytes=memory,
        disk_bytes=1 << 30,
        labels={},
        persistent=False,
        created_at=1.0,
        expires_at=None,
    )
    spec = WorkspaceSpec(
        workspace_id=workspace_id, image="img", cpu=cpu, memory_bytes=memory, disk_bytes=1 << 30, env={}, labels={}
    )
    return StoredWorkspace(
        record=record, spec=spec, handle=f"fake-{workspace_id}" if handle is None else handle, pooled=pooled
    )


@dataclass
class CountingProvider(FakeProvider):
    """A fake provider that remembers which handles it was asked to measure."""

    asked: list[list[str]] = field(default_factory=list)

    def resource_usage(self, handles: list[str]) -> dict[str, ResourceUsage]:
        self.asked.append(list(handles))
        return super().resource_usage(handles)


class Clock:
    """The sampler's clock, moved by the test (wall time stays real)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sampler_module, "time", fake)
    return fake


def measured(result: Sample) -> dict[str, WorkspaceSample]:
    return {workspace.workspace_id: workspace for workspace in result.workspaces}


# ---------------------------------------------------------------------- Sampler


def test_a_workspace_s_cpu_rate_is_unknown_at_first_then_measured_against_its_cpu_limit(clock: Clock) -> None:
    provider = FakeProvider()
    entries = [stored("ws_half", cpu=0.5), stored("ws_two", cpu=2.0)]
    provider.usage = {
        "fake-ws_half": ResourceUsage(cpu_seconds=3.0, memory_bytes=10 * MiB),
        "fake-ws_two": ResourceUsage(cpu_seconds=40.0, memory_bytes=10 * MiB),
    }
    sampler = Sampler()
    first = measured(sampler.sample(entries, {"gvisor": provider}, ""))
    assert (first["ws_half"].cpu_pct, first["ws_two"].cpu_pct) == (None, None)

    clock.now += 2.0
    provider.usage = {
        "fake-ws_half": ResourceUsage(cpu_seconds=3.5, memory_bytes=10 * MiB),  # 0.25 core of 0.5
        "fake-ws_two": ResourceUsage(cpu_seconds=44.0, memory_bytes=10 * MiB),  # 2 cores of 2
    }
    second = measured(sampler.sample(entries, {"gvisor": provider}, ""))
    assert second["ws_half"].cpu_pct == pytest.approx(50.0)
    assert second["ws_two"].cpu_pct == pytest.approx(100.0)

    clock.now += 1.0
    provider.usage["fake-ws_half"] = ResourceUsage(cpu_seconds=0.2, memory_bytes=10 * MiB)  # restarted counters
    third = measured(sampler.sample(entries, {"gvisor": provider}, ""))
    assert third["ws_half"].cpu_pct == 0.0  # never negative
    assert third["ws_two"].cpu_pct == 0.0  # no CPU time used since


def test_memory_is_measured_against_the_workspace_s_own_limit(clock: Clock) -> None:
    provider = FakeProvider()
    provider.usage = {
        "fake-ws_a": ResourceUsage(cpu_seconds=0.0, memory_bytes=25 * MiB),
        "fake-ws_b": ResourceUsage(cpu_seconds=0.0, memory_bytes=600 * MiB),
    }
    entries = [stored("ws_a", memory=100 * MiB), stored("ws_b", memory=400 * MiB)]
    result = measured(Sampler().sample(entries, {"gvisor": provider}, ""))
    assert result["ws_a"] == WorkspaceSample("ws_a", cpu_pct=None, memory_bytes=25 * MiB, memory_pct=25.0)
    assert (result["ws_b"].memory_bytes, result["ws_b"].memory_pct) == (600 * MiB, 150.0)


def test_a_workspace_missing_from_a_sample_starts_its_cpu_rate_afresh(clock: Clock) -> None:
    provider = FakeProvider()
    entries = [stored("ws_a")]
    provider.usage = {"fake-ws_a": ResourceUsage(cpu_seconds=1.0, memory_bytes=MiB)}
    sampler = Sampler()
    sampler.sample(entries, {"gvisor": provider}, "")
    clock.now += 1.0
    provider.usage = {}  # not measurable this round
    assert sampler.sample(entries, {"gvisor": provider}, "").workspaces == []
    clock.now += 1.0
    provider.usage = {"fake-ws_a": ResourceUsage(cpu_seconds=5.0, memory_bytes=MiB)}
    assert measured(sampler.sample(entries, {"gvisor": provider}, ""))["ws_a"].cpu_pct is None


def test_only_ready_workspaces_with_a_handle_on_a_known_provider_are_measured(clock: Clock) -> None:
    provider = CountingProvider()
    for workspace_id in ("ws_ready", "ws_member", "ws_creating", "ws_no_handle"):
        provider.usage[f"fake-{workspace_id}"] = ResourceUsage(cpu_seconds=0.0, memory_bytes=MiB)
    entries = [
        stored("ws_ready"),
        stored("ws_member", pooled=True),
        stored("ws_creating", "creating"),
        stored("ws_no_handle", handle=""),
        stored("ws_elsewhere", provider="e2b"),
        stored("ws_unmeasurable"),
    ]
    result = Sampler().sample(entries, {"gvisor": provider}, "")
    assert provider.asked == [["fake-ws_ready", "fake-ws_member", "fake-ws_unmeasurable"]]
    assert sorted(measured(result)) == ["ws_member", "ws_ready"]


def test_reserved_cpu_and_memory_sum_every_active_workspace_including_pool_members(clock: Clock) -> None:
    entries = [
        stored("ws_ready", cpu=1.5, memory=100 * MiB),
        stored("ws_member", cpu=1.0, memory=200 * MiB, pooled=True),
        stored("ws_creating", "creating", cpu=0.5, memory=300 * MiB),
        stored("ws_stopping", "stopping", cpu=2.0, memory=400 * MiB),
        stored("ws_elsewhere", provider="e2b", cpu=1.0, memory=500 * MiB),
        stored("ws_failed", "failed", cpu=8.0, memory=8000 * MiB),
        stored("ws_destroyed", "destroyed", cpu=8.0, memory=8000 * MiB),
    ]
    host = Sampler().sample(entries, {"gvisor": FakeProvider()}, "").host
    cpus = psutil.cpu_count() or 1
    total = psutil.virtual_memory().total
    assert (host.cpus, host.memory_bytes) == (cpus, total)
    assert host.reserved_cpu == 6.0
    assert host.reserved_cpu_pct == pytest.approx(600.0 / cpus)
    assert host.reserved_memory_bytes == 1500 * MiB
    assert host.reserved_memory_pct == pytest.approx(100.0 * 1500 * MiB / total)
    assert 0.0 <= host.cpu_pct <= 100.0 and 0.0 < host.mem_pct <= 100.0


def test_the_host_disk_is_measured_at_the_data_root_when_one_is_known(clock: Clock, tmp_path: Path) -> None:
    sampler = Sampler()
    with_root = sampler.sample([], {}, str(tmp_path))
    assert with_root.host.disk_pct == pytest.approx(psutil.disk_usage(str(tmp_path)).percent, abs=1.0)
    assert sampler.sample([], {}, "").host.disk_pct is None
    assert with_root.workspaces == [] and with_root.took_ms >= 0.0
    assert abs(with_root.sampled_at - time.time()) < 60


def test_disk_pct_reads_the_filesystem_of_a_path_and_none_without_one(tmp_path: Path) -> None:
    pct = disk_pct(str(tmp_path))
    assert pct is not None and 0.0 <= pct <= 100.0
    assert pct == pytest.approx(psutil.disk_usage(str(tmp_path)).percent, abs=1.0)
    assert disk_pct("") is None
    assert disk_pct(str(tmp_path / "missing" / "deeper")) is None


# ---------------------------------------------------------------------- stats


@pytest.fixture
def statelog(tmp_path: Path) -> Iterator[StateLog]:
    log = StateLog(tmp_path / "state")
    yield log
    log.close()


def populate(statelog: StateLog) -> None:
    for entry in (
        stored("ws_a"),
        stored("ws_b", provider="e2b"),
        stored("ws_c", "creating"),
        stored("ws_d", "failed"),
        stored("ws_e", "destroyed"),
        stored("ws_member", pooled=True),
    ):
        statelog.put_workspace(entry)


def pools() -> dict[str, Pool]:
    gvisor, e2b = Pool(2), Pool(1)
    gvisor.ready("ws_member")
    gvisor.booting("ws_next")
    assert gvisor.claim() == "ws_member"
    gvisor.ready("ws_other")
    assert e2b.claim() is None
    e2b.booting("ws_boot")
    e2b.failed("ws_boot")
    assert e2b.evict() is None
    return {"gvisor": gvisor, "e2b": e2b}


def host_sample(**values: Any) -> HostSample:
    fields: dict[str, Any] = {
        "cpu_pct": 12.0,
        "mem_pct": 34.0,
        "disk_pct": 56.0,
        "cpus": 4,
        "memory_bytes": 8 << 30,
        "reserved_cpu": 2.0,
        "reserved_cpu_pct": 50.0,
        "reserved_memory_bytes": 1 << 30,
        "reserved_memory_pct": 12.5,
    }
    fields.update(values)
    return HostSample(**fields)


def provider_status(name: str, healthy: bool, runtime: str, data_root: str = "") -> ProviderStatus:
    return ProviderStatus(
        name=name, healthy=healthy, checked_at=time.time(), detail="", runtime=runtime, data_root=data_root
    )


def test_stats_count_requested_workspaces_capacity_pools_and_the_reaper(
    statelog: StateLog, make_settings: MakeSettings
) -> None:
    populate(statelog)
    boards = Boards(admission=Admission(7, ["ws_a", "ws_b", "ws_c", "ws_member"]), pools=pools())
    boards.sweeps.swept(3)
    boards.sweeps.orphan_removed()
    stats = snapshot(statelog, boards, make_settings())
    assert stats["workspaces"] == 3  # active and requested: pool members are not
    assert stats["by_state"] == {"ready": 2, "creating": 1, "failed": 1, "destroyed": 1}
    assert stats["capacity"] == {"active": 4, "limit": 7}
    assert stats["pool"] == {
        "size": 1,
        "target": 3,
        "booting": 1,
        "claims": 1,
        "misses": 1,
        "refill_failures": 1,
        "evictions": 0,
    }
    reaper = stats["reaper"]
    assert (reaper["interval_s"], reaper["sweeps"], reaper["reaped"], reaper["orphans"]) == (3600.0, 1, 3, 1)
    assert reaper["last_sweep_at"] is not None
    assert (stats["alerts"], stats["usage"]) == ([], {})
    msgspec.json.encode(stats)  # plain data, as the wire sends it


def test_stats_before_the_first_sample_read_the_host_directly(
    statelog: StateLog, make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(sample_interval_s=7.0)
    boards = Boards(admission=Admission(1))
    boards.providers.update(provider_status("gvisor", True, "runsc", data_root=str(tmp_path)))
    stats = snapshot(statelog, boards, settings)
    assert set(stats["host"]) == {"cpu_pct", "mem_pct", "disk_pct"}
    assert stats["host"]["cpu_pct"] is None  # a rate: known from the second reading on
    assert 0.0 < stats["host"]["mem_pct"] <= 100.0
    assert stats["host"]["disk_pct"] == pytest.approx(psutil.disk_usage(str(tmp_path)).percent, abs=1.0)
    assert stats["sampler"] == {"interval_s": 7.0, "sampled_at": None, "took_ms": None}
    assert (stats["workspaces"], stats["by_state"], stats["pool"]["target"]) == (0, {}, 0)
    no_root = snapshot(statelog, Boards(admission=Admission(1)), settings)  # the state directory's disk instead
    assert no_root["host"]["disk_pct"] == pytest.approx(psutil.disk_usage(str(settings.state_dir)).percent, abs=1.0)
    unreadable = Boards(admission=Admission(1))
    unreadable.providers.update(provider_status("gvisor", True, "runsc", data_root="/nonexistent/docker"))
    assert snapshot(statelog, unreadable, settings)["host"]["disk_pct"] is None  # not measured is not "0% full"


def test_stats_after_a_sample_report_it_with_alerts_and_usage(statelog: StateLog, make_settings: MakeSettings) -> None:
    boards = Boards(admission=Admission(1))
    taken = Sample(host=host_sample(), workspaces=[], sampled_at=1234.5, took_ms=3.25)
    boards.samples.set(taken)
    boards.alerts.evaluate(
        "memory:ws_a", resource="memory", value=91.0, threshold=80.0, limit=100.0, message="hot", workspace_id="ws_a"
    )
    boards.usage.update("ws_a", memory_bytes=64 * MiB, memory_pct=91.0)
    stats = snapshot(statelog, boards, make_settings(sample_interval_s=2.0))
    assert stats["host"] == msgspec.to_builtins(taken.host)
    assert stats["host"]["reserved_memory_pct"] == 12.5
    assert stats["sampler"] == {"interval_s": 2.0, "sampled_at": 1234.5, "took_ms": 3.25}
    [alert] = stats["alerts"]
    assert (alert["type"], alert["key"], alert["value"], alert["workspace_id"]) == (
        "alert.raised",
        "memory:ws_a",
        91.0,
        "ws_a",
    )
    assert alert["ts"] > 0
    usage = stats["usage"]["ws_a"]
    assert (usage["memory_bytes"], usage["memory_pct"], usage["cpu_pct"]) == (64 * MiB, 91.0, None)


# ---------------------------------------------------------------------- metrics

Scraped = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(metrics: Metrics) -> Scraped:
    samples: Scraped = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for one in family.samples:
            samples.setdefault(one.name, {})[tuple(sorted(one.labels.items()))] = one.value
    return samples


def test_metrics_read_the_log_and_the_boards_at_scrape_time(statelog: StateLog) -> None:
    populate(statelog)
    boards = Boards(admission=Admission(7, ["ws_a", "ws_b", "ws_c"]), pools=pools())
    boards.providers.update(provider_status("gvisor", True, "runsc"))
    boards.providers.update(provider_status("e2b", False, "e2b"))
    for key, resource in (("host:cpu", "cpu"), ("cpu:ws_a", "cpu"), ("memory:ws_a", "memory")):
        boards.alerts.evaluate(key, resource=resource, value=90.0, threshold=80.0, limit=100.0, message="m")
    boards.usage.update("ws_a", cpu_pct=12.5, memory_bytes=64 * MiB, disk_used_bytes=4096)
    boards.usage.update("ws_b", memory_bytes=MiB)  # CPU and disk not measured yet
    metrics = Metrics(lambda: (statelog, boards))

    found = scrape(metrics)
    assert found["agent_workspaces_workspaces"] == {
        (("provider", "gvisor"), ("state", "ready")): 1,
        (("provider", "e2b"), ("state", "ready")): 1,
        (("provider", "gvisor"), ("state", "creating")): 1,
        (("provider", "gvisor"), ("state", "failed")): 1,
        (("provider", "gvisor"), ("state", "destroyed")): 1,
    }
    assert (found["agent_workspaces_capacity_active"], found["agent_workspaces_capacity_limit"]) == (
        {(): 3},
        {(): 7},
    )
    assert found["agent_workspaces_provider_healthy"] == {
        (("provider", "e2b"), ("runtime", "e2b")): 0.0,
        (("provider", "gvisor"), ("runtime", "runsc")): 1.0,
    }
    gvisor, e2b = (("provider", "gvisor"),), (("provider", "e2b"),)
    assert found["agent_workspaces_pool_size"] == {gvisor: 1, e2b: 0}
    assert found["agent_workspaces_pool_target"] == {gvisor: 2, e2b: 1}
    assert found["agent_workspaces_pool_claims_total"] == {gvisor: 1, e2b: 0}
    assert found["agent_workspaces_pool_misses_total"] == {gvisor: 0, e2b: 1}
    assert found["agent_workspaces_alerts_active"] == {
        (("resource", "cpu"),): 2,
        (("resource", "memory"),): 1,
        (("resource", "disk"),): 0,
    }
    assert found["agent_workspaces_workspace_cpu_percent"] == {(("workspace", "ws_a"),): 12.5}
    assert found["agent_workspaces_workspace_memory_bytes"] == {
        (("workspace", "ws_a"),): 64 * MiB,
        (("workspace", "ws_b"),): MiB,
    }
    assert found["agent_workspaces_workspace_disk_bytes"] == {(("workspace", "ws_a"),): 4096}
    assert not any(name.startswith("agent_workspaces_host_") for name in found)  # no sample yet
    assert "agent_workspaces_reserved_cpu_percent" not in found

    boards.samples.set(Sample(host=host_sample(disk_pct=None), workspaces=[], sampled_at=1.0, took_ms=1.0))
    boards.admission.release("ws_a")
    found = scrape(metrics)
    assert found["agent_workspaces_host_cpu_percent"] == {(): 12.0}
    assert found["agent_workspaces_host_memory_percent"] == {(): 34.0}
    assert "agent_workspaces_host_disk_percent" not in found  # not measurable: left out, not zero
    assert found["agent_workspaces_reserved_cpu_percent"] == {(): 50.0}
    assert found["agent_workspaces_reserved_memory_percent"] == {(): 12.5}
    assert found["agent_workspaces_capacity_active"] == {(): 2}
    boards.samples.set(Sample(host=host_sample(disk_pct=56.0), workspaces=[], sampled_at=2.0, took_ms=1.0))
    assert scrape(metrics)["agent_workspaces_host_disk_percent"] == {(): 56.0}


def test_before_the_runtime_serves_only_the_request_histogram_is_exposed() -> None:
    metrics = Metrics(lambda: None)
    text = generate_latest(metrics.registry).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert names == {"agent_workspaces_request_duration_seconds"}
    assert scrape(metrics) == {}  # no op observed yet


def test_request_latencies_are_counted_by_op_and_outcome() -> None:
    metrics = Metrics(lambda: None)
    metrics.observe("create", 0.004, ok=True)
    metrics.observe("create", 0.2, ok=True)
    metrics.observe("create", 1.5, ok=False)
    metrics.observe("get", 0.001, ok=False)
    found = scrape(metrics)
    assert found["agent_workspaces_request_duration_seconds_count"] == {
        (("op", "create"), ("outcome", "ok")): 2,
        (("op", "create"), ("outcome", "error")): 1,
        (("op", "get"), ("outcome", "error")): 1,
    }
    sums = found["agent_workspaces_request_duration_seconds_sum"]
    assert sums[(("op", "create"), ("outcome", "ok"))] == pytest.approx(0.204)
    buckets = found["agent_workspaces_request_duration_seconds_bucket"]
    assert buckets[(("le", "0.005"), ("op", "create"), ("outcome", "ok"))] == 1
    assert buckets[(("le", "0.25"), ("op", "create"), ("outcome", "ok"))] == 2
    assert buckets[(("le", "+Inf"), ("op", "create"), ("outcome", "error"))] == 1


# ---------------------------------------------------------------------- logs


def format_line(msg: str, *args: object, extra: dict[str, Any] | None = None, exc_info: Any = None) -> dict[str, Any]:
    record = logging.getLogger("runtime.test").makeRecord(
        "runtime.test", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    expected_ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
    assert parsed["ts"] == expected_ts
    return parsed


def test_a_json_line_has_ts_level_logger_and_the_formatted_message() -> None:
    line = format_line("provider %s is %s: café", "gvisor", "unhealthy")
    assert line == {
        "ts": line["ts"],
        "level": "warning",
        "logger": "runtime.test",
        "message": "provider gvisor is unhealthy: café",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])


def test_the_workspace_id_is_taken_from_the_message_or_from_extra() -> None:
    assert format_line("workspace %s is ready", "ws_0123456789ab")["workspace_id"] == "ws_0123456789ab"
    assert format_line("done", extra={"workspace_id": "ws_aaaaaaaaaaaa"})["workspace_id"] == "ws_aaaaaaaaaaaa"
    named = format_line("workspace ws_0123456789ab", extra={"workspace_id": "ws_bbbbbbbbbbbb"})
    assert named["workspace_id"] == "ws_bbbbbbbbbbbb"  # what the call says wins


@pytest.mark.parametrize(
    "message", ["no workspace here", "ws_0123456789a is short", "ws_0123456789abc is long", "ws_0123456789AB upper"]
)
def test_a_line_without_a_workspace_id_has_no_workspace_field(message: str) -> None:
    assert "workspace_id" not in format_line(message)


def test_an_exception_is_included_with_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = format_line("failed on ws_0123456789ab", exc_info=sys.exc_info())
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: boom")
    assert line["workspace_id"] == "ws_0123456789ab"
    assert "exc" not in format_line("fine")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards (``configure`` replaces its handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_configure_json_replaces_the_handlers_and_writes_json_lines_to_stderr_at_the_level(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    root_logger.addHandler(logging.NullHandler())
    configure("INFO", "json")
    assert len(root_logger.handlers) == 1
    assert isinstance(root_logger.handlers[0].formatter, JsonFormatter)
    assert root_logger.level == logging.INFO
    logging.getLogger("runtime.app").debug("hidden")
    logging.getLogger("runtime.app").info("workspace %s is ready", "ws_0123456789ab")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert (line["level"], line["logger"], line["workspace_id"]) == ("info", "runtime.app", "ws_0123456789ab")


def test_configure_text_writes_readable_lines(root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.WARNING)
    logging.getLogger("runtime.app").info("hidden")
    logging.getLogger("runtime.app").warning("disk is %d%% full", 91)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING runtime\.app: disk is 91% full", lines[0])
