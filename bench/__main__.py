"""`python -m bench [--quick] [--only NAMES] [--out DIR] [--no-peer]`: the one benchmark harness.

Every scenario beside its raw baseline (and the peer, llm-sandbox) in one run, written
to ``bench/results/`` as JSON, Markdown and PNG charts: see ``bench.harness.run``. The
older one-purpose benchmarks still run on their own, e.g. ``python -m bench.ping``,
``bench.workspaces``, ``bench.agent``, ``bench.pool``, ``bench.restart``,
``bench.sampler``, ``bench.http``, ``bench.mcp``, ``bench.github``, ``bench.e2b``.
"""

from __future__ import annotations

import sys

from bench.harness.run import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
