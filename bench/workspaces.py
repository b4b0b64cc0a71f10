"""Cold create and `exec true` through the runtime, against the raw docker SDK, on runsc and runc.

Each path is timed in alternating rounds in one run, so machine noise hits both alike.
The raw baseline uses the same options the provider uses: a labelled volume at
/workspace, tini as init, the same CPU/memory/pids limits, the same network.

    python -m bench.workspaces [--creates 15] [--execs 50] [--runtimes runsc,runc]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import docker
from docker.types import Mount

from bench.common import bench_settings, docker_providers
from bench.stats import summary, table
from runtime.app import Runtime
from runtime.providers.docker import MANAGED_NETWORK, PIDS_LIMIT
from runtime.wire import Client

IMAGE = "agent-workspaces/base:bookworm"
LABELS = {"agent-workspaces.bench": "raw"}
CPU, MEMORY = 1.0, 512 << 20


def _raw_create(
    client: docker.DockerClient,
    runtime: str,
    n: int,
    cpu: float = CPU,
    memory: int = MEMORY,
    *,
    prefix: str = "aw-bench-raw",
    labels: dict[str, str] | None = None,
) -> str:
    """Create and start a container (and its volume) with the provider's options; return its name.

    ``prefix`` and ``labels`` let a caller (the harness) keep its containers apart from another run's.
    """
    name = f"{prefix}-{n}"
    labels = {**LABELS, **(labels or {})}
    api = client.api
    api.create_volume(name, labels=labels)
    api.create_container(
        IMAGE,
        entrypoint=["sleep", "infinity"],
        name=name,
        labels=labels,
        working_dir="/workspace",
        host_config=api.create_host_config(
            runtime=runtime,
            init=True,
            nano_cpus=int(cpu * 1e9),
            mem_limit=memory,
            memswap_limit=memory,
            pids_limit=PIDS_LIMIT,
            network_mode=MANAGED_NETWORK,
            mounts=[Mount("/workspace", name, type="volume")],
        ),
    )
    api.start(name)
    return name


def _raw_remove(client: docker.DockerClient, name: str) -> None:
    """Remove the container (killing it) and its volume, as the provider's destroy does."""
    client.api.remove_container(name, force=True, v=True)
    client.api.remove_volume(name, force=True)


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = call()
    return time.perf_counter() - began, value


def bench_runtime(oci_runtime: str, creates: int, execs: int) -> list[dict[str, float | str]]:
    """Measure one OCI runtime; returns the table rows."""
    docker_client = docker.from_env(version="auto")
    with tempfile.TemporaryDirectory() as state:
        settings = bench_settings(state, default_cpu=CPU, default_memory=MEMORY)
        providers = docker_providers(settings, oci_runtime)

        with (
            Runtime(settings, providers=providers) as runtime,
            Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
        ):
            samples: dict[str, list[float]] = {
                "raw create": [],
                "runtime create": [],
                "raw exec": [],
                "runtime exec": [],
            }
            warm = client.create()  # the first create also makes the network
            client.destroy(warm.id)
            for n in range(creates):
                seconds, name = _timed(lambda n=n: _raw_create(docker_client, oci_runtime, n))
                samples["raw create"].append(seconds)
                _raw_remove(docker_client, name)
                seconds, record = _timed(client.create)
                samples["runtime create"].append(seconds)
                client.destroy(record.id)
            raw_name = _raw_create(docker_client, oci_runtime, creates)
            raw_container = docker_client.containers.get(raw_name)
            record = client.create()
            try:
                for _ in range(3):  # warm both paths up
                    raw_container.exec_run(["true"])
                    client.exec(record.id, ["true"])
                for _ in range(execs):
                    samples["raw exec"].append(_timed(lambda: raw_container.exec_run(["true"]))[0])
                    samples["runtime exec"].append(_timed(lambda: client.exec(record.id, ["true"]))[0])
            finally:
                _raw_remove(docker_client, raw_name)
                client.destroy(record.id)
    rows = [summary(f"{oci_runtime}: {name}", values, unit="ms") for name, values in samples.items()]
    return rows


def main() -> None:
    """Run the benchmark and print one table per OCI runtime."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=15)
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--runtimes", default="runsc,runc")
    args = parser.parse_args()
    for oci_runtime in args.runtimes.split(","):
        rows = bench_runtime(oci_runtime, args.creates, args.execs)
        print(table(rows[:2], baseline=f"{oci_runtime}: raw create"))
        print(table(rows[2:], baseline=f"{oci_runtime}: raw exec"))
        print()


if __name__ == "__main__":
    main()
