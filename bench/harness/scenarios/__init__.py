"""The scenario families, in the order a run takes them; each returns ``Scenario`` records.

- ``wire``: ``ping``/``get`` with 1, 8, 32 clients beside raw zmq+msgspec;
- ``lifecycle``: cold create and destroy on runsc and runc beside the raw docker SDK (peer open/close);
- ``pool``: the warm-pool claim beside raw create+start;
- ``exec``: ``exec true``, the agent step (peer too), file write/read 1 KB and 10 MB;
- ``contention``: ``ping`` p50/p99 while 4 workspaces spin at their CPU limit, beside idle;
- ``restart``: restart with 1,000 records beside the provider listing;
- ``scale``: 50, 100, 200 small workspaces (RSS, CPU, ping p99, create latency).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness.context import Context
from bench.harness.results import Scenario
from bench.harness.scenarios import contention, execs, lifecycle, restart, scale, wire

__all__ = ["FAMILIES"]

FAMILIES: dict[str, Callable[[Context], list[Scenario]]] = {
    "wire": wire.run,
    "lifecycle": lifecycle.run,
    "pool": lifecycle.run_pool,
    "exec": execs.run,
    "contention": contention.run,
    "restart": restart.run,
    "scale": scale.run,
}
