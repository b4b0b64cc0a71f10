"""Cold create and destroy on runsc and runc, and the warm-pool claim, beside the raw docker SDK.

Per OCI runtime, alternating in one run (the order rotating each step): the raw
baseline creates and starts a container with the provider's very options
(``bench.workspaces._raw_create``: a labelled volume at /workspace, tini, the same
CPU/memory/pids limits and network) and removes it (``remove(force=True)`` + the volume);
ours is ``client.create()`` then ``client.destroy()`` through a runtime in its own
process; the peer (runsc) is llm-sandbox's ``open`` then ``close``.

The warm-pool claim is ``client.create()`` answered from a pool of 5, timed in batches
while the pool is full, beside the raw create+start it saves (taken while the pool idles).
"""

from __future__ import annotations

import contextlib
import time
from functools import partial
from typing import Any

import docker

from bench.harness.context import Context
from bench.harness.peer import PEER_LABEL, PeerProcess
from bench.harness.results import Scenario, Target
from bench.harness.server import RuntimeProcess
from bench.harness.timing import alternate, timed
from bench.workspaces import CPU, MEMORY, _raw_create, _raw_remove
from runtime.wire import Client

__all__ = ["RAW_CREATE", "RAW_REMOVE", "run", "run_pool"]

RAW_CREATE = "raw docker create+start (same options)"
RAW_REMOVE = "raw remove(force=True) + volume remove"
POOL_SIZE = 5


class _Cycle:
    """Create-then-destroy steps of one path; each step records both halves."""

    def __init__(self) -> None:
        self.create: list[float] = []
        self.destroy: list[float] = []


def _cycles(
    ctx: Context, oci_runtime: str, client: Client, docker_client: Any, peer: PeerProcess | None, steps: int
) -> dict[str, _Cycle]:
    cycles = {"baseline": _Cycle(), "ours": _Cycle()}
    counter = iter(range(10**6))

    def raw() -> float:
        n = next(counter)
        made = timed(lambda: _raw_create(docker_client, oci_runtime, n, prefix=ctx.prefix("raw"), labels=ctx.labels))
        cycles["baseline"].create.append(made)
        cycles["baseline"].destroy.append(timed(lambda: _raw_remove(docker_client, f"{ctx.prefix('raw')}-{n}")))
        return 0.0

    def ours() -> float:
        began = time.perf_counter()
        record = client.create(labels={"bench": "lifecycle"})
        cycles["ours"].create.append(time.perf_counter() - began)
        cycles["ours"].destroy.append(timed(lambda: client.destroy(record.id)))
        return 0.0

    paths = {"baseline": raw, "ours": ours}
    if peer is not None:
        cycles["peer"] = _Cycle()

        def peer_cycle() -> float:
            cycles["peer"].create.append(peer.call("open"))
            cycles["peer"].destroy.append(peer.call("close"))
            return 0.0

        paths["peer"] = peer_cycle
    alternate(paths, steps, warmup=1)  # the warm-up also makes the network
    for cycle in cycles.values():  # drop the warm-up's samples
        del cycle.create[0], cycle.destroy[0]
    return cycles


def run(ctx: Context) -> list[Scenario]:
    """Cold create and destroy, runsc then runc."""
    scenarios: list[Scenario] = []
    docker_client = docker.from_env(version="auto")
    try:
        for oci_runtime, steps in (("runsc", ctx.n(40, 3)), ("runc", ctx.n(30, 2))):
            with (
                RuntimeProcess(oci_runtime, default_cpu=CPU, default_memory=MEMORY) as runtime,
                Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
                ctx.peer(oci_runtime) if oci_runtime == "runsc" else contextlib.nullcontext() as peer,
            ):
                cycles = _cycles(ctx, oci_runtime, client, docker_client, peer, steps)
            peer_cycle = cycles.get("peer")
            scenarios.append(
                Scenario(
                    name=f"cold create ({oci_runtime})",
                    group="lifecycle",
                    ours=cycles["ours"].create,
                    baseline=cycles["baseline"].create,
                    baseline_label=RAW_CREATE,
                    peer=peer_cycle.create if peer_cycle else [],
                    peer_label=f"{PEER_LABEL} open" if peer_cycle else "",
                    note=f"{CPU:g} CPU, {MEMORY >> 20}M"
                    + ("; the peer's containers have no limits" if peer_cycle else ""),
                )
            )
            scenarios.append(
                Scenario(
                    name=f"destroy ({oci_runtime})",
                    group="lifecycle",
                    ours=cycles["ours"].destroy,
                    baseline=cycles["baseline"].destroy,
                    baseline_label=RAW_REMOVE,
                    peer=peer_cycle.destroy if peer_cycle else [],
                    peer_label=f"{PEER_LABEL} close" if peer_cycle else "",
                    target=Target("destroy p50 <= 1.1x raw remove(force=True) + volume remove", ratio_max=1.1),
                    note="the peer's close stops and removes the container; its volume is removed untimed after"
                    if peer_cycle
                    else "",
                )
            )
            print(f"   {oci_runtime}: {steps} create/destroy cycles per path")
    finally:
        docker_client.close()
    return scenarios


def _wait_full(client: Client, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (pool := client.stats()["pool"])["size"] < POOL_SIZE or pool["booting"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm pool did not fill within {timeout_s:g} s: {pool}")
        time.sleep(0.05)


def run_pool(ctx: Context) -> list[Scenario]:
    """Claims from a full pool of 5, beside raw create+start taken while the pool idles."""
    batches = ctx.n(4, 1)
    claims: list[float] = []
    raws: list[float] = []
    docker_client = docker.from_env(version="auto")
    counter = iter(range(10**6))
    try:
        with (
            RuntimeProcess(
                "runsc", warm_pool_size=POOL_SIZE, default_cpu=CPU, default_memory=MEMORY, health_interval_s=1.0
            ) as runtime,
            Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
        ):
            for _ in range(batches):
                _wait_full(client)
                for _ in range(2):
                    n = next(counter)
                    create = partial(
                        _raw_create, docker_client, "runsc", n, prefix=ctx.prefix("pool"), labels=ctx.labels
                    )
                    raws.append(timed(create))
                    _raw_remove(docker_client, f"{ctx.prefix('pool')}-{n}")
                made = []
                for _ in range(POOL_SIZE):
                    began = time.perf_counter()
                    record = client.create(labels={"bench": "claim"})
                    claims.append(time.perf_counter() - began)
                    if not record.from_pool:
                        ctx.notes.append("warm-pool claim: a create missed the pool")
                    made.append(record.id)
                for workspace_id in made:
                    client.destroy(workspace_id)
            _wait_full(client)  # no boot in flight when the runtime stops; the sweep removes the members
    finally:
        docker_client.close()
    print(f"   {len(claims)} claims, {len(raws)} raw creates")
    return [
        Scenario(
            name="warm-pool claim (runsc)",
            group="lifecycle",
            ours=claims,
            baseline=raws,
            baseline_label=RAW_CREATE,
            note=f"pool of {POOL_SIZE}; claims timed while the pool was full; health checks every 1 s",
        )
    ]
