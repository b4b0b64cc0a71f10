"""Claim latency from the warm pool, end to end through the ZeroMQ client, next to a cold create.

A runtime with a pool of 5 (gVisor by default); claims are timed in batches of 5 while
the pool is full, then the pool refills untimed. Cold creates (a shape the pool does not
hold) are timed in the same run.

    python -m bench.pool [--claims 40] [--colds 10] [--runtime runsc]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from bench.common import bench_settings, docker_providers
from bench.stats import summary, table
from runtime.app import Runtime
from runtime.wire import Client

POOL_SIZE = 5


def _wait_full(client: Client) -> None:
    pause = threading.Event()
    while (pool := client.stats()["pool"])["size"] < POOL_SIZE or pool["booting"]:
        pause.wait(0.05)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=40)
    parser.add_argument("--colds", type=int, default=10)
    parser.add_argument("--runtime", default="runsc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        settings = bench_settings(state, warm_pool_size=POOL_SIZE)
        providers = docker_providers(settings, args.runtime)

        claims: list[float] = []
        colds: list[float] = []
        with (
            Runtime(settings, providers=providers) as runtime,
            Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
        ):
            while len(claims) < args.claims:
                _wait_full(client)
                batch = []
                for _ in range(min(POOL_SIZE, args.claims - len(claims))):
                    began = time.perf_counter()
                    record = client.create(labels={"bench": "claim"})
                    claims.append(time.perf_counter() - began)
                    assert record.from_pool, "a claim missed the pool"
                    batch.append(record.id)
                for workspace_id in batch:
                    client.destroy(workspace_id)
            for _ in range(args.colds):
                began = time.perf_counter()
                record = client.create(memory="256M")  # not the pool's shape
                colds.append(time.perf_counter() - began)
                client.destroy(record.id)
            stats = client.stats()["pool"]
            _wait_full(client)  # no boot in flight when the runtime stops
        # leave nothing behind: a restart without a pool destroys the members
        with (
            Runtime(settings.replace(warm_pool_size=0), providers=providers) as cleaner,
            Client(cleaner.endpoint, cleaner.token, timeout_s=120) as client,
        ):
            while client.stats()["capacity"]["active"]:
                threading.Event().wait(0.1)
    rows = [summary("cold create", colds, unit="ms"), summary("claim from the pool", claims, unit="ms")]
    print(table(rows, baseline="cold create"))
    print(f"pool: {stats}")


if __name__ == "__main__":
    main()
