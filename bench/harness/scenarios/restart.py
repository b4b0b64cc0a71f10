"""Restart with 1,000 records in the state log, beside the provider listing start-up cannot avoid.

``bench.restart``'s measurement: from ``Runtime(...).start()`` until a ``list`` through
the ZeroMQ client is answered (the runtime serves once it reconciled its log with
Docker), for a log of 1,000 destroyed workspaces (what a long-lived runtime
accumulates) and one of 1,000 ready workspaces whose containers are gone (each turned
``failed`` at start: the most reconciliation work). The baseline, alternating with
them: the docker SDK listing this runtime's labelled containers and volumes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import docker

from bench.common import bench_settings
from bench.harness.context import Context
from bench.harness.results import Scenario
from bench.restart import _fill, _listing, _restart

__all__ = ["RECORDS", "run"]

RECORDS = 1000


def run(ctx: Context) -> list[Scenario]:
    """Both logs, ``runs`` times each, each restart beside a listing."""
    runs = ctx.n(10, 3)
    docker_client = docker.from_env(version="auto")
    listing: list[float] = []
    restarts: dict[str, list[float]] = {"destroyed": [], "ready": []}
    try:
        for _ in range(runs):
            for state, samples in restarts.items():
                with tempfile.TemporaryDirectory(prefix="aw-bench-restart-") as state_dir:
                    instance_id = _fill(Path(state_dir), RECORDS, state)  # type: ignore[arg-type]
                    listing.append(_listing(docker_client, instance_id))
                    samples.append(_restart(bench_settings(state_dir)))
    finally:
        docker_client.close()
    print(f"   {runs} restart(s) per log")
    return [
        Scenario(
            name=f"restart, {RECORDS:,} destroyed records",
            group="restart",
            ours=restarts["destroyed"],
            baseline=listing,
            baseline_label="provider listing (docker SDK containers + volumes)",
            note="start() until the first list is answered",
        ),
        Scenario(
            name=f"restart, {RECORDS:,} ready records, containers gone",
            group="restart",
            ours=restarts["ready"],
            baseline=listing,
            baseline_label="provider listing (docker SDK containers + volumes)",
            note="every record turned failed at start",
        ),
    ]
