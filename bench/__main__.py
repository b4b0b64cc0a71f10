"""`python -m bench`: every benchmark in turn (see each module for its own options)."""

from __future__ import annotations

import sys

from bench import agent, e2b, github, http, mcp, ping, pool, restart, sampler, workspaces

BENCHMARKS = {
    "ping": ping.main,
    "workspaces": workspaces.main,
    "pool": pool.main,
    "restart": restart.main,
    "sampler": sampler.main,
    "agent": agent.main,
    "github": github.main,
    "http": http.main,
    "mcp": mcp.main,
    "e2b": e2b.main,
}


def main() -> None:
    """Run the named benchmarks (all by default)."""
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        print(f"== {name}")
        sys.argv = [f"bench.{name}"]
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
