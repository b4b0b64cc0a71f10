"""Time to serve after a restart with 1,000 workspace records in the state log.

Measured from ``Runtime(...).start()`` until a ``list`` through the ZeroMQ client is
answered (the runtime serves only once it has reconciled the log with Docker), on the
real Docker provider, for three logs of 1,000 records:

- history: 1,000 destroyed workspaces, what a long-lived runtime accumulates;
- vanished: 1,000 ready workspaces whose containers are gone, so every one is turned
  ``failed`` at start (the most reconciliation work);
- live: ``--live`` real running workspaces (gVisor) and destroyed ones up to 1,000.

Baseline in the same run: the provider listing alone (the docker SDK listing this
runtime's labelled containers and volumes), which start-up cannot avoid.

    python -m bench.restart [--runs 5] [--records 1000] [--live 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import docker

from bench.common import bench_settings, docker_providers
from bench.stats import summary, table
from runtime.app import Runtime
from runtime.capacity.resources import new_workspace_id
from runtime.config import Settings
from runtime.messages import State, StoredWorkspace, WorkspaceRecord, WorkspaceSpec
from runtime.providers.base import LABEL_INSTANCE
from runtime.state.statelog import StateLog
from runtime.wire import Client


def _fill(state_dir: Path, count: int, state: State) -> str:
    """Add ``count`` records in ``state`` to the log in ``state_dir``; return the instance id."""
    log = StateLog(state_dir / "state")
    try:
        futures = []
        for _ in range(count):
            workspace_id = new_workspace_id()
            record = WorkspaceRecord(
                id=workspace_id,
                state=state,
                provider="gvisor",
                runtime="runsc",
                image="agent-workspaces/base:bookworm",
                cpu=1.0,
                memory_bytes=512 << 20,
                disk_bytes=10 << 30,
                labels={"bench": "restart"},
                persistent=False,
                created_at=time.time(),
                expires_at=time.time() + 3600,
            )
            spec = WorkspaceSpec(
                workspace_id=workspace_id,
                image=record.image,
                cpu=record.cpu,
                memory_bytes=record.memory_bytes,
                disk_bytes=record.disk_bytes,
                env={},
                labels=record.labels,
            )
            entry = StoredWorkspace(record=record, spec=spec, handle=f"aw-{workspace_id}")
            futures.append(log.submit_workspace(entry, reason="bench"))
        for future in futures:
            future.result()
        return log.instance_id
    finally:
        log.close()


def _restart(settings: Settings) -> float:
    """Seconds from start() to the first answered ``list``; the runtime is stopped after."""
    began = time.perf_counter()
    runtime = Runtime(settings, providers=docker_providers(settings, "runsc")).start()
    try:
        with Client(runtime.endpoint, runtime.token, timeout_s=120) as client:
            client.list()
            return time.perf_counter() - began
    finally:
        runtime.stop()


def _listing(client: docker.DockerClient, instance_id: str) -> float:
    label = {"label": f"{LABEL_INSTANCE}={instance_id}"}
    began = time.perf_counter()
    client.api.containers(all=True, filters=label)
    client.api.volumes(filters=label)
    return time.perf_counter() - began


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--live", type=int, default=10)
    args = parser.parse_args()
    docker_client = docker.from_env(version="auto")
    listing: list[float] = []
    history: list[float] = []
    vanished: list[float] = []
    live: list[float] = []
    for _ in range(args.runs):
        for state, samples in (("destroyed", history), ("ready", vanished)):
            with tempfile.TemporaryDirectory() as state_dir:
                instance_id = _fill(Path(state_dir), args.records, state)
                listing.append(_listing(docker_client, instance_id))
                samples.append(_restart(bench_settings(state_dir)))
    with tempfile.TemporaryDirectory() as state_dir:
        settings = bench_settings(state_dir)
        with Runtime(settings, providers=docker_providers(settings, "runsc")) as runtime, runtime.client() as client:
            made = [client.create().id for _ in range(args.live)]
        instance_id = _fill(Path(state_dir), args.records - args.live, "destroyed")
        for _ in range(args.runs):
            listing.append(_listing(docker_client, instance_id))
            live.append(_restart(settings))
        with Runtime(settings, providers=docker_providers(settings, "runsc")) as runtime, runtime.client() as client:
            for workspace_id in made:
                client.destroy(workspace_id)
    rows = [
        summary("provider listing alone (docker SDK)", listing, unit="ms"),
        summary(f"restart, {args.records} destroyed records", history, unit="ms"),
        summary(f"restart, {args.records} ready, containers gone", vanished, unit="ms"),
        summary(f"restart, {args.live} live + {args.records - args.live} destroyed", live, unit="ms"),
    ]
    print(table(rows, baseline="provider listing alone (docker SDK)"))


if __name__ == "__main__":
    main()
