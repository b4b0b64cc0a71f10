"""The sampler's own cost with 50 workspaces, next to Docker's stats API.

Creates ``--workspaces`` real workspaces (gVisor by default), then times ``--samples``
samples exactly as the SamplerActor takes them (host via psutil, every workspace's
cgroup counters): the CPU time of the sampling thread per sample, and that as a share
of one core at the default interval (``WORKSPACE_SAMPLE_INTERVAL_S`` = 5 s). Baseline
in the same run: the docker SDK's ``container.stats(stream=False)``, the usual way to
read the same numbers, for ``--baseline`` of the workspaces.

    python -m bench.sampler [--workspaces 50] [--samples 40] [--baseline 5] [--runtime runsc]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import docker

from bench.common import bench_settings, docker_providers
from bench.stats import summary, table
from runtime.app import Runtime
from runtime.monitoring.sampler import Sampler

_INTERVAL_S = 5.0


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--baseline", type=int, default=5)
    parser.add_argument("--runtime", default="runsc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        settings = bench_settings(state, default_memory=128 << 20, default_cpu=0.5)
        with Runtime(settings, providers=docker_providers(settings, args.runtime)) as runtime:

            def create(_: int) -> str:
                with runtime.client(timeout_s=300) as client:
                    return client.create().id

            with ThreadPoolExecutor(4) as pool:
                made = list(pool.map(create, range(args.workspaces)))
            ctx = runtime._ctx  # the bench drives the sampler directly, as its actor does
            assert ctx is not None
            data_root = ctx.board.data_root()
            sampler = Sampler()
            cpu: list[float] = []
            wall: list[float] = []
            measured = 0
            for _ in range(args.samples):
                entries = ctx.statelog.workspaces()
                began_cpu, began = time.thread_time(), time.perf_counter()
                sample = sampler.sample(entries, ctx.providers, data_root)
                cpu.append(time.thread_time() - began_cpu)
                wall.append(time.perf_counter() - began)
                measured = len(sample.workspaces)
            client = docker.from_env(version="auto")
            stats_wall: list[float] = []
            for entry in entries[: args.baseline]:
                began = time.perf_counter()
                client.api.stats(entry.handle, stream=False)
                stats_wall.append(time.perf_counter() - began)
            with runtime.client(timeout_s=300) as client_:
                for workspace_id in made:
                    client_.destroy(workspace_id)
    rows = [
        summary(f"docker stats API, 1 workspace (baseline, n={len(stats_wall)})", stats_wall, unit="ms"),
        summary(f"sampler wall time, {measured} workspaces", wall, unit="ms"),
        summary(f"sampler CPU time, {measured} workspaces", cpu, unit="ms"),
    ]
    print(table(rows, baseline=rows[0]["name"]))  # type: ignore[arg-type]
    mean_cpu = sum(cpu) / len(cpu)
    print(
        f"sampler CPU per sample: {mean_cpu * 1000:.1f} ms = {100 * mean_cpu / _INTERVAL_S:.2f}% of one core "
        f"at the default {_INTERVAL_S:g} s interval ({100 * mean_cpu / 1.0:.2f}% at 1 s); "
        f"docker stats for {measured} workspaces would take {measured * sum(stats_wall) / len(stats_wall):.1f} s"
    )


if __name__ == "__main__":
    main()
