"""Prometheus metrics: an HTTP text endpoint at ``WORKSPACE_METRICS_ADDR`` (off when empty).

Request latencies are histograms observed by the Gateway as each reply leaves; every
other metric is read from the runtime's boards at scrape time, so scraping costs the
runtime nothing between scrapes. Names start with ``agent_workspaces_``; each runtime
has its own registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from runtime.errors import ConfigError
from runtime.monitoring.boards import Boards
from runtime.state.statelog import StateLog

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = ["Metrics", "Observed"]

Observed = Callable[[], tuple[StateLog, Boards] | None]
"""What the metrics read: the state log and the boards, once the runtime serves (``None`` before)."""

log = logging.getLogger(__name__)

_PREFIX = "agent_workspaces"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """The runtime's metrics and, once ``serve`` is called, their HTTP endpoint.

    Args:
        observed: Returns the state log and the boards once the runtime serves.
    """

    def __init__(self, observed: Observed) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Histogram(
            f"{_PREFIX}_request_duration_seconds",
            "Time from a request's arrival to its reply leaving, by op and outcome.",
            ["op", "outcome"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, bool], Any] = {}
        self.registry.register(_BoardCollector(observed))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address = ""

    def observe(self, op: str, seconds: float, ok: bool) -> None:
        """A reply to ``op`` left after ``seconds`` (Gateway thread: on every request's path)."""
        child = self._children.get((op, ok))
        if child is None:  # ``labels()`` takes a lock and builds a key: once per op and outcome
            child = self._children[(op, ok)] = self._requests.labels(op, "ok" if ok else "error")
        child.observe(seconds)

    def serve(self, address: str) -> None:
        """Start the HTTP endpoint on ``host:port``.

        Raises:
            ConfigError: The address cannot be bound.
        """
        host, _, port = address.rpartition(":")
        try:
            self._server, self._thread = start_http_server(int(port), addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"WORKSPACE_METRICS_ADDR={address!r} cannot be listened on: {exc.strerror}") from None
        self.address = f"{host}:{self._server.server_port}"
        log.info("metrics on http://%s/metrics", self.address)

    def close(self) -> None:
        """Stop the HTTP endpoint, if it runs."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class _BoardCollector(Collector):
    """Everything read from the boards at scrape time."""

    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    def describe(self) -> list[Any]:
        return []  # names depend on nothing known in advance; collected at scrape time

    def collect(self) -> Iterator[Any]:
        observed = self._observed()
        if observed is None:
            return
        statelog, boards = observed
        workspaces = GaugeMetricFamily(
            f"{_PREFIX}_workspaces", "Requested workspaces by state and provider.", labels=["state", "provider"]
        )
        counts: dict[tuple[str, str], int] = {}
        for entry in statelog.workspaces():
            if not entry.pooled:
                key = (entry.record.state, entry.record.provider)
                counts[key] = counts.get(key, 0) + 1
        for (state, provider), count in sorted(counts.items()):
            workspaces.add_metric([state, provider], count)
        yield workspaces

        yield _gauge("capacity_active", "Workspaces holding a slot (pool members included).", boards.admission.count())
        yield _gauge("capacity_limit", "WORKSPACE_MAX_CONCURRENT.", boards.admission.limit)

        healthy = GaugeMetricFamily(
            f"{_PREFIX}_provider_healthy", "1 when the provider's last check passed.", labels=["provider", "runtime"]
        )
        for status in boards.providers.all():
            healthy.add_metric([status.name, status.runtime], 1.0 if status.healthy else 0.0)
        yield healthy

        sizes = GaugeMetricFamily(f"{_PREFIX}_pool_size", "Ready warm-pool members.", labels=["provider"])
        targets = GaugeMetricFamily(f"{_PREFIX}_pool_target", "WORKSPACE_WARM_POOL_SIZE.", labels=["provider"])
        claims = CounterMetricFamily(f"{_PREFIX}_pool_claims", "Creates served from the pool.", labels=["provider"])
        misses = CounterMetricFamily(
            f"{_PREFIX}_pool_misses", "Creates of the pool's shape that found it empty.", labels=["provider"]
        )
        for name, pool in sorted(boards.pools.items()):
            stats = pool.stats()
            sizes.add_metric([name], stats.size)
            targets.add_metric([name], stats.target)
            claims.add_metric([name], stats.claims)
            misses.add_metric([name], stats.misses)
        yield from (sizes, targets, claims, misses)

        alerts = GaugeMetricFamily(f"{_PREFIX}_alerts_active", "Active alerts by resource.", labels=["resource"])
        by_resource: dict[str, int] = {}
        for alert in boards.alerts.active():
            by_resource[alert.resource] = by_resource.get(alert.resource, 0) + 1
        for resource in ("cpu", "memory", "disk"):
            alerts.add_metric([resource], by_resource.get(resource, 0))
        yield alerts

        sample = boards.samples.latest()
        if sample is not None:
            host = sample.host
            yield _gauge("host_cpu_percent", "Host CPU use.", host.cpu_pct)
            yield _gauge("host_memory_percent", "Host memory use.", host.mem_pct)
            if host.disk_pct is not None:
                yield _gauge("host_disk_percent", "Use of the disk holding Docker's data root.", host.disk_pct)
            yield _gauge("reserved_cpu_percent", "CPU limits of workspaces against the host's CPUs.",
                         host.reserved_cpu_pct)  # fmt: skip
            yield _gauge("reserved_memory_percent", "Memory limits of workspaces against the host's memory.",
                         host.reserved_memory_pct)  # fmt: skip
        cpu = GaugeMetricFamily(
            f"{_PREFIX}_workspace_cpu_percent", "CPU use against the workspace's limit.", labels=["workspace"]
        )
        memory = GaugeMetricFamily(f"{_PREFIX}_workspace_memory_bytes", "Memory in use.", labels=["workspace"])
        disk = GaugeMetricFamily(f"{_PREFIX}_workspace_disk_bytes", "Disk occupied.", labels=["workspace"])
        for workspace_id, usage in sorted(boards.usage.all().items()):
            if usage.cpu_pct is not None:
                cpu.add_metric([workspace_id], usage.cpu_pct)
            if usage.memory_bytes is not None:
                memory.add_metric([workspace_id], usage.memory_bytes)
            if usage.disk_used_bytes is not None:
                disk.add_metric([workspace_id], usage.disk_used_bytes)
        yield from (cpu, memory, disk)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{_PREFIX}_{name}", documentation, value=value)
