"""What every scenario of one run shares: quick or full, the run's label, the peer, what scale found.

Everything a run creates outside the runtime under test (raw baseline containers and
volumes, the peer's) carries the label ``agent-workspaces.bench-run=<run id>``, so the
final sweep removes exactly this run's leftovers and never another engineer's.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.harness.peer import PeerProcess
from bench.harness.results import ScalePoint

__all__ = ["RUN_LABEL_KEY", "Context"]

RUN_LABEL_KEY = "agent-workspaces.bench-run"
N = TypeVar("N", int, float)


@dataclass
class Context:
    """One run's settings and shared findings.

    Attributes:
        quick: Fewer iterations, scale only to 20.
        peer_ready: The peer's virtualenv is installed and usable.
        run_id: Unique per run; names and labels this run's containers.
        scale: The scale run's points, once it ran.
        notes: Remarks a scenario wants in the report (e.g. a peer call that failed).
    """

    quick: bool = False
    peer_ready: bool = False
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    scale: list[ScalePoint] = field(default_factory=list)
    scale_info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def n(self, full: N, quick: N) -> N:
        """``quick`` in a quick run, else ``full``."""
        return quick if self.quick else full

    @property
    def labels(self) -> dict[str, str]:
        """The labels of everything this run makes outside the runtime."""
        return {RUN_LABEL_KEY: self.run_id}

    @property
    def label(self) -> str:
        """``key=value`` of ``labels``, as Docker filters take it."""
        return f"{RUN_LABEL_KEY}={self.run_id}"

    def prefix(self, what: str) -> str:
        """A container name prefix unique to this run."""
        return f"aw-bench-{self.run_id}-{what}"

    @contextlib.contextmanager
    def peer(self, runtime: str = "runsc") -> Iterator[PeerProcess | None]:
        """The peer driver, or ``None`` when the peer is not installed."""
        if not self.peer_ready:
            yield None
            return
        with PeerProcess(self.label, runtime) as process:
            yield process
