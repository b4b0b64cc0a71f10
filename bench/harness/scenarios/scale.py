"""Scale: 50, 100, 200 small workspaces (256M, 0.25 CPU) held by one runtime, measured as the count grows.

The runtime serves from its own process (``bench.harness.server``, runsc), so its RSS and
CPU are its own (``psutil`` on that process). Workspaces are created one at a time
(each create's latency is recorded). At 0 and at each checkpoint:

- the runtime's RSS, and its CPU (% of one core) while idle over ``idle_s`` (at least the
  sampler's 5 s interval in a full run) and while it was creating;
- ``ping`` round trips through the runtime, interleaved with the raw zmq+msgspec echo
  (the wire scenario's closed loop, one client);
- a few raw docker create+start with the same limits (then removed), the baseline of
  the create latency at that count;
- the host's memory in use and CPU (system-wide), and the workspaces' own CPU and memory
  read from their cgroups (``runtime.providers.cgroups``, as the sampler reads them),
  whence each idle workspace's footprint for the host sizing.

Creation stops early (and says why) if the host's available memory falls below
``MIN_AVAILABLE``, creates keep failing, or growing takes longer than ``GROWTH_BUDGET_S``.
Every workspace made is destroyed at the end.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import docker
import psutil

from bench.harness.context import Context
from bench.harness.results import ScalePoint, Scenario, Target
from bench.harness.scenarios.wire import BASELINE, Loop, echo_server, interleaved_loops
from bench.harness.server import RuntimeProcess
from bench.harness.timing import timed
from bench.workspaces import _raw_create, _raw_remove
from runtime.errors import WorkspaceError
from runtime.providers.base import LABEL_INSTANCE
from runtime.providers.cgroups import CgroupFiles, find_cgroup, read_usage
from runtime.wire import Client

__all__ = ["SMALL_CPU", "SMALL_MEMORY", "run"]

SMALL_CPU, SMALL_MEMORY = 0.25, 256 << 20
MIN_AVAILABLE = 3 << 30
MAX_ERRORS = 5
GROWTH_BUDGET_S = 480.0
"""The longest the workspaces are grown for (creates and checkpoints; a quarter in a quick
run): a host past its CPU limit takes minutes per create, and the full run stays near 15 min."""


def _now() -> float:
    return time.monotonic()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class _Probe:
    """Takes a ``ScalePoint`` of the runtime at its current count."""

    def __init__(self, ctx: Context, runtime: RuntimeProcess, echo: str, docker_client: Any) -> None:
        self.ctx = ctx
        self.process = psutil.Process(runtime.pid)
        self.loops = {
            "baseline": Loop(echo, runtime.token, "ping", {}, 1),
            "ours": Loop(runtime.endpoint, runtime.token, "ping", {}, 1),
        }
        self.docker = docker_client
        self.raw = iter(range(10**6))
        self.instance_id = runtime.instance_id
        self.cgroups: dict[str, CgroupFiles | None] = {}

    def _cgroups(self) -> list[CgroupFiles]:
        """The cgroup counters of every workspace container of the runtime (found once per container)."""
        label = {"label": f"{LABEL_INSTANCE}={self.instance_id}"}
        for container in self.docker.api.containers(filters=label):
            if container["Id"] not in self.cgroups:
                pid = self.docker.api.inspect_container(container["Id"])["State"]["Pid"]
                self.cgroups[container["Id"]] = find_cgroup(pid) if pid else None
        return [files for files in self.cgroups.values() if files is not None]

    @staticmethod
    def _usage(cgroups: list[CgroupFiles]) -> tuple[float, int]:
        cpu, memory = 0.0, 0
        for files in cgroups:
            with contextlib.suppress(OSError):
                usage = read_usage(files)
                cpu, memory = cpu + usage.cpu_seconds, memory + usage.memory_bytes
        return cpu, memory

    def point(self, count: int, creates: list[float], raws: list[float], busy_pct: float, errors: int) -> ScalePoint:
        ctx = self.ctx
        idle_s = ctx.n(5.0, 1.0)
        cgroups = self._cgroups()
        time.sleep(ctx.n(2.0, 0.0))  # let the last workspaces settle (their agents start after create)
        psutil.cpu_percent(None)  # starts the host's window
        began_cpu, began, (began_ws, _) = _cpu_seconds(self.process), time.perf_counter(), self._usage(cgroups)
        time.sleep(idle_s)
        wall = time.perf_counter() - began
        idle_pct = 100 * (_cpu_seconds(self.process) - began_cpu) / wall
        host_cpu_pct = psutil.cpu_percent(None)
        ended_ws, workspaces_memory = self._usage(cgroups)
        workspaces_cpu_pct = 100 * (ended_ws - began_ws) / wall
        pings, _ = interleaved_loops(self.loops, ctx.n(4, 2), ctx.n(0.5, 0.25))
        if not raws:  # at 0: the baseline's reference
            raws = [self.raw_create() for _ in range(ctx.n(3, 1))]
        memory = psutil.virtual_memory()
        point = ScalePoint(
            count=count,
            create_s=creates,
            raw_create_s=raws,
            rss_bytes=self.process.memory_info().rss,
            cpu_idle_pct=idle_pct,
            cpu_busy_pct=busy_pct,
            ping_s=pings["ours"],
            raw_ping_s=pings["baseline"],
            host_used_bytes=memory.total - memory.available,
            host_cpu_pct=host_cpu_pct,
            workspaces_cpu_pct=workspaces_cpu_pct,
            workspaces_memory_bytes=workspaces_memory,
            errors=errors,
        )
        print(
            f"   {count:4d} held: RSS {point.rss_bytes / 2**20:.0f} MiB, "
            f"CPU idle {idle_pct:.1f}% busy {busy_pct:.0f}%, host {point.host_used_bytes / 2**30:.1f} GiB used "
            f"and CPU {host_cpu_pct:.0f}% while idle (the workspaces' cgroups: {workspaces_cpu_pct:.1f}% of a core, "
            f"{workspaces_memory / 2**20:.0f} MiB), errors {errors}",
            flush=True,
        )
        return point

    def raw_create(self) -> float:
        """Seconds of one raw docker create+start with the same limits (then removed, untimed)."""
        n, prefix = next(self.raw), self.ctx.prefix("scale")
        seconds = timed(
            partial(
                _raw_create, self.docker, "runsc", n, SMALL_CPU, SMALL_MEMORY, prefix=prefix, labels=self.ctx.labels
            )
        )
        _raw_remove(self.docker, f"{prefix}-{n}")
        return seconds

    def close(self) -> None:
        for loop in self.loops.values():
            loop.close()


class _Growth:
    """Creates workspaces one at a time up to a count, a raw create+start interleaved every ``every``."""

    def __init__(self, ctx: Context, client: Client, probe: _Probe) -> None:
        self.ctx, self.client, self.probe = ctx, client, probe
        self.made: list[str] = []
        self.errors = 0
        self.stopped = ""
        self.every = ctx.n(10, 5)
        self.budget_s = ctx.n(GROWTH_BUDGET_S, GROWTH_BUDGET_S / 4)
        self.deadline = _now() + self.budget_s

    def to(self, target: int) -> ScalePoint:
        """Grow to ``target`` held (or until stopped); the point taken there."""
        creates: list[float] = []
        raws: list[float] = []
        began_cpu, began = _cpu_seconds(self.probe.process), time.perf_counter()
        attempts = 0
        while len(self.made) < target and not self.stopped:
            attempts += 1
            try:
                at = time.perf_counter()
                self.made.append(self.client.create(labels={"bench": "scale"}).id)
                creates.append(time.perf_counter() - at)
            except WorkspaceError as exc:
                self.errors += 1
                self.ctx.notes.append(f"scale: create {len(self.made) + 1} failed: {exc}")
                self.stopped = f"{self.errors} creates failed" if self.errors >= MAX_ERRORS else ""
            if attempts % self.every == 0:
                raws.append(self.probe.raw_create())
            if psutil.virtual_memory().available < MIN_AVAILABLE:
                self.stopped = f"host memory available below {MIN_AVAILABLE >> 30} GiB at {len(self.made)}"
            elif _now() > self.deadline and len(self.made) < target:
                self.stopped = f"the growth's time budget ({self.budget_s:.0f} s) ran out at {len(self.made)} held"
        busy_s = time.perf_counter() - began - sum(raws)  # the runtime's CPU over its own creates
        busy = 100 * (_cpu_seconds(self.probe.process) - began_cpu) / max(busy_s, 1e-9)
        return self.probe.point(len(self.made), creates, raws, busy, self.errors)


def _destroy_all(runtime: RuntimeProcess, made: list[str]) -> None:
    def destroy(chunk: list[str]) -> None:
        with Client(runtime.endpoint, runtime.token, timeout_s=300) as client:
            for workspace_id in chunk:
                with contextlib.suppress(WorkspaceError):  # the sweep after the runtime stops removes the rest
                    client.destroy(workspace_id)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(destroy, [made[i::4] for i in range(4)]))


def run(ctx: Context) -> list[Scenario]:
    """Grow to each checkpoint, probing at 0 and at each."""
    counts = (10, 20) if ctx.quick else (50, 100, 200)
    made: list[str] = []
    docker_client = docker.from_env(version="auto")
    try:
        with (
            RuntimeProcess("runsc", default_cpu=SMALL_CPU, default_memory=SMALL_MEMORY, max_concurrent=1000) as runtime,
            Client(runtime.endpoint, runtime.token, timeout_s=300) as client,
            echo_server({"ping": bytes(client.request("ping"))}) as echo,
        ):
            probe = _Probe(ctx, runtime, echo, docker_client)
            grow = _Growth(ctx, client, probe)
            made = grow.made
            try:
                points = [probe.point(0, [], [], 0.0, 0)]
                for target in counts:
                    points.append(grow.to(target))
                    if grow.stopped:
                        ctx.notes.append(f"scale stopped early: {grow.stopped}")
                        break
            finally:
                probe.close()
                _destroy_all(runtime, made)
    finally:
        docker_client.close()
    ctx.scale = points
    ctx.scale_info = {"cpu": SMALL_CPU, "memory_bytes": SMALL_MEMORY, "checkpoints": list(counts),
                      "held": len(made), "errors": grow.errors, "stopped_early": grow.stopped or None,
                      "raw_create_every": grow.every}  # fmt: skip
    last, before = points[-1], points[-2]
    return [
        Scenario(
            name=f"scale: ping with {last.count} small workspaces",
            group="scale",
            unit="us",
            ours=last.ping_s,
            baseline=last.raw_ping_s,
            baseline_label=BASELINE,
            target=Target(
                "200 small workspaces held with ping p99 <= 5 ms and no error",
                p99_max_s=0.005,
                count_min=200,
                errors_max=0,
            ),
            count=last.count,
            errors=grow.errors,
            note=f"{SMALL_MEMORY >> 20}M, {SMALL_CPU:g} CPU each; one client",
        ),
        Scenario(
            name=f"scale: create, {before.count} to {last.count} held",
            group="scale",
            ours=last.create_s,
            baseline=last.raw_create_s,
            baseline_label="raw docker create+start, same limits, interleaved",
            count=last.count,
            errors=grow.errors,
            note=f"a raw create+start (then removed) after every {grow.every} creates",
        ),
    ]
