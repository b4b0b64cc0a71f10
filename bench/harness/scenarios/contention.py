"""Noisy neighbours: ``ping`` through the runtime while 4 workspaces spin at their CPU limit.

The runtime serves from its own process (``bench.harness.server``, runsc) with 4
workspaces of 1 CPU each. The baseline is the same ``ping`` loop (the wire scenario's
closed loop, one client) while those workspaces are idle, measured before the spinners
start and again after they stop, so drift over the run falls on both sides. Then each
workspace runs ``while :; do :; done`` (streamed through its agent) and the loop runs
again; the workspaces' own CPU (their cgroups, as the sampler reads them) is reported
beside it, to show they did spin at their limit. On a host with fewer cores than the
spinners ask for, the runtime competes with them for the CPU: the p99 says what that costs.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import docker
import psutil

from bench.harness.context import Context
from bench.harness.results import Scenario
from bench.harness.scenarios.wire import Loop
from bench.harness.server import RuntimeProcess
from runtime.providers.base import LABEL_INSTANCE
from runtime.providers.cgroups import CgroupFiles, find_cgroup, read_usage
from runtime.wire import Client

__all__ = ["SPINNERS", "run"]

SPINNERS = 4
_CPU = 1.0
_SPIN = "while :; do :; done"


def _cgroups(docker_client: Any, instance_id: str) -> list[CgroupFiles]:
    found = []
    for container in docker_client.api.containers(filters={"label": f"{LABEL_INSTANCE}={instance_id}"}):
        pid = docker_client.api.inspect_container(container["Id"])["State"]["Pid"]
        files = find_cgroup(pid) if pid else None
        if files is not None:
            found.append(files)
    return found


def _cpu_seconds(cgroups: list[CgroupFiles]) -> float:
    total = 0.0
    for files in cgroups:
        with contextlib.suppress(OSError):
            total += read_usage(files).cpu_seconds
    return total


def _pings(loop: Loop, rounds: int, seconds: float) -> list[float]:
    samples: list[float] = []
    for _ in range(rounds):
        samples += loop.run(seconds)[0]
    return samples


def run(ctx: Context) -> list[Scenario]:
    """Ping p50/p99 with the spinners running, beside the same loop with them idle."""
    rounds, seconds = ctx.n(5, 2), ctx.n(1.0, 0.3)
    docker_client = docker.from_env(version="auto")
    with (
        RuntimeProcess("runsc", default_cpu=_CPU) as runtime,
        Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
    ):
        made: list[str] = []
        loop = Loop(runtime.endpoint, runtime.token, "ping", {}, 1)
        try:
            for _ in range(SPINNERS):
                made.append(client.create(labels={"bench": "contention"}).id)
            for workspace_id in made:  # each agent is up: the spinners start through it
                client.exec(workspace_id, "true")
            cgroups = _cgroups(docker_client, runtime.instance_id)
            loop.run(min(0.2, seconds))  # connect and warm up
            psutil.cpu_percent(None)  # starts the host's window
            idle = _pings(loop, rounds, seconds)
            host_idle = psutil.cpu_percent(None)
            spinners = {workspace_id: client.spawn(workspace_id, _SPIN).process_id for workspace_id in made}
            began, began_cpu = time.perf_counter(), _cpu_seconds(cgroups)
            loop.run(min(0.5, seconds))  # the spinners reach their quota
            psutil.cpu_percent(None)
            spinning = _pings(loop, rounds, seconds)
            host_spinning = psutil.cpu_percent(None)
            spun = (_cpu_seconds(cgroups) - began_cpu) / (time.perf_counter() - began)
            for workspace_id, process_id in spinners.items():
                # Stopped first: Docker may give up killing a sandbox starved of CPU (a 500 on destroy).
                client.exec_kill(workspace_id, process_id, "KILL")
            idle += _pings(loop, rounds, seconds)
            for workspace_id in made:
                client.destroy(workspace_id)
            made.clear()
        finally:
            loop.close()
            for workspace_id in made:
                with contextlib.suppress(Exception):
                    client.destroy(workspace_id)
            docker_client.close()
    print(
        f"   the {SPINNERS} spinners used {spun:.2f} cores (limit {SPINNERS * _CPU:g}) while ping ran; host CPU "
        f"{host_spinning:.0f}% (idle workspaces: {host_idle:.0f}%, the ping loop itself included)",
        flush=True,
    )
    return [
        Scenario(
            name=f"ping p99 with {SPINNERS} workspaces spinning CPU",
            group="contention",
            unit="us",
            ours=spinning,
            baseline=idle,
            baseline_label=f"ping with the {SPINNERS} workspaces idle",
            extra={
                "spinners": SPINNERS,
                "cpu_per_workspace": _CPU,
                "spinners_cores_used": round(spun, 2),
                "cgroups_read": len(cgroups),
                "host_cpu_pct_idle": host_idle,
                "host_cpu_pct_spinning": host_spinning,
            },
            note=(
                "the spinners' cores are measured from their cgroups while the loop ran; the closed ping loop "
                "(client and runtime) keeps about one core busy itself"
            ),
        )
    ]
