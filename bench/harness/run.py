"""`python -m bench [--quick] [--only NAMES] [--out DIR] [--no-peer]`: run the scenarios, write the report.

A full run (``make bench``) takes about 9 minutes on 2 cores (at most 15) and writes
``bench/results/``; ``--quick`` (fewer iterations, scale to 20) takes under 2 minutes and
writes ``bench/results/quick/`` unless ``--out`` says otherwise. The peer (llm-sandbox)
is installed on first use into ``bench/.peer-venv`` (a few seconds from the registry);
``--no-peer`` leaves it out. Each family runs even if one before it failed; a failure is
reported and makes the exit status 1, a missed target never does. Whatever the run
made outside a runtime under test carries the run's label and is swept at the end.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import traceback
from pathlib import Path

from bench.harness import charts, report
from bench.harness.context import Context
from bench.harness.machine import describe, one_line
from bench.harness.peer import PEER_NAME, PEER_VERSION, ensure_venv
from bench.harness.report import Run
from bench.harness.scenarios import FAMILIES
from bench.harness.server import sweep
from bench.harness.sizing import host_sizing

__all__ = ["RESULTS", "main"]

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, scale to 20 (< 2 min)")
    parser.add_argument("--only", default="", help=f"comma-separated families of: {', '.join(FAMILIES)}")
    parser.add_argument("--out", type=Path, help="output directory (default bench/results, quick: bench/results/quick)")
    parser.add_argument("--no-peer", action="store_true", help="leave llm-sandbox out")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(FAMILIES)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    args.names = names
    args.out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run, report, and return the exit status (1 only if a scenario family crashed)."""
    args = _arguments(argv)
    began = time.monotonic()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = describe()
    mode = "quick" if args.quick else "full"
    print(f"== bench ({mode}): {', '.join(args.names)} on {one_line(machine)}", flush=True)
    ctx = Context(quick=args.quick)
    peer: dict[str, object] = {"name": PEER_NAME, "version": PEER_VERSION}
    if args.no_peer:
        peer.update(available=False, status="left out (--no-peer)")
    elif {"lifecycle", "exec"} & set(args.names):
        ctx.peer_ready, status = ensure_venv()
        peer.update(available=ctx.peer_ready, status=status)
        print(f"   peer: {status}", flush=True)
    peer["configuration"] = (
        'Docker backend, runtime_configs={"runtime": "runsc"}, skip_environment_setup=True, '
        "image agent-workspaces/base:bookworm, a volume at its workdir /sandbox"
    )
    run = Run(mode=mode, started_at=started, duration_s=0.0, machine=machine,
              command="python -m bench" + (" --quick" if args.quick else ""), peer=peer)  # fmt: skip
    try:
        for name in args.names:
            print(f"== {name}", flush=True)
            family_began = time.monotonic()
            try:
                run.scenarios += FAMILIES[name](ctx)
            except Exception as exc:
                traceback.print_exc()
                run.failures.append({"scenario": name, "error": f"{type(exc).__name__}: {exc}"})
            run.timings_s[name] = time.monotonic() - family_began
            print(f"   {name}: {run.timings_s[name]:.0f} s", flush=True)
    finally:
        left = sweep(ctx.label)
        if left:
            ctx.notes.append(f"the final sweep removed {left} container(s) a scenario left behind")
    run.scale, run.scale_info = ctx.scale, ctx.scale_info
    run.sizing = host_sizing(machine, ctx.scale) if ctx.scale else {"measured": False, "why": "scale did not run"}
    run.notes = ctx.notes
    run.duration_s = time.monotonic() - began
    written = report.write(run, args.out)
    written += charts.write(run.scenarios, run.scale, machine, mode, args.out)
    print()
    print(report.markdown(run).split("\n## Scale")[0])
    print(f"== {mode} run took {run.duration_s:.0f} s; wrote {', '.join(str(path) for path in written)}")
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
