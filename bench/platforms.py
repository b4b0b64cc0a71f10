"""What a command costs under each registered gVisor configuration: for choosing runsc's flags.

`exec true` through the runtime is mostly gVisor making, running and reaping a process
(the harness's exec scenario reports that share). How much that costs depends on runsc's
flags (above all its platform: ``systrap``, the default, or ``ptrace``; ``kvm`` needs
hardware virtualization) and on the host. This compares OCI runtimes the operator has
registered in ``/etc/docker/daemon.json`` (it changes no configuration), e.g.::

    "runsc-ptrace": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host", "--platform=ptrace"]}

One container per runtime with the product's default limits (and no network: a process's
cost does not depend on it), measured in alternating
rounds so machine noise hits them alike, each probe run inside the container by
``python3``:

- ``spawn true``: ``subprocess.Popen(["true"])`` with stdout and stderr piped, in its own
  session, as the workspace agent runs a command, 1 ms apart (the agent waits for requests);
- ``2000 stat``: a system call the sandbox's kernel answers itself, 2,000 times;
- ``python3 -c pass``: an interpreter's start and exit (a short-lived, page-fault-heavy process).

    python -m bench.platforms --runtimes runsc,runsc-ptrace [--rounds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

import docker

from bench.stats import summary, table
from bench.workspaces import IMAGE, LABELS

__all__ = ["PROBE", "main", "measure"]

CPU, MEMORY = 2.0, 4 << 30  # the product's defaults (WORKSPACE_DEFAULT_CPU, WORKSPACE_DEFAULT_MEMORY)
PROBE = """
import json, os, subprocess, sys, time
def timed(call, n, pause=0.0):
    samples = []
    for _ in range(n):
        time.sleep(pause)
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return samples
def spawn():
    p = subprocess.Popen(["true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    p.communicate()
def stats():
    for _ in range(2000):
        os.stat("/etc/hostname")
n = int(sys.argv[1])
print(json.dumps({"spawn true": timed(spawn, n, 0.001)[2:], "2000 stat": timed(stats, 3),
                  "python3 -c pass": timed(lambda: subprocess.run(["python3", "-c", "pass"]), 3)}))
"""
"""Run inside each container as ``python3 -c PROBE N``: prints each probe's samples (seconds) as JSON."""


def measure(runtimes: list[str], rounds: int, spawns: int = 25) -> dict[str, dict[str, list[float]]]:
    """Samples per runtime and probe, from ``rounds`` alternating rounds."""
    client = docker.from_env(version="auto")
    api = client.api
    names: dict[str, str] = {}
    samples: dict[str, dict[str, list[float]]] = {runtime: {} for runtime in runtimes}
    try:
        for n, runtime in enumerate(runtimes):
            names[runtime] = name = f"aw-bench-platform-{n}"
            config = api.create_host_config(
                runtime=runtime, init=True, nano_cpus=int(CPU * 1e9), mem_limit=MEMORY, network_mode="none"
            )
            api.create_container(IMAGE, entrypoint=["sleep", "infinity"], name=name, labels=LABELS, host_config=config)
            api.start(name)
        for step in range(rounds):
            shift = step % len(runtimes)
            for runtime in runtimes[shift:] + runtimes[:shift]:
                container: Any = client.containers.get(names[runtime])
                code, out = container.exec_run(["python3", "-c", PROBE, str(spawns)])
                if code != 0:
                    raise SystemExit(f"the probe failed under {runtime}: {out.decode(errors='replace')}")
                for probe, values in json.loads(out).items():
                    samples[runtime].setdefault(probe, []).extend(values)
    finally:
        for name in names.values():
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(name, force=True)
        client.close()
    return samples


def main() -> None:
    """Measure and print one table per probe, each runtime's p50 against the first's."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtimes", default="runsc", help="registered OCI runtimes, comma-separated")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    samples = measure(runtimes, args.rounds)
    for probe in samples[runtimes[0]]:
        rows = [summary(f"{runtime}: {probe}", samples[runtime][probe], unit="ms") for runtime in runtimes]
        print(table(rows, baseline=f"{runtimes[0]}: {probe}"))
        print()


if __name__ == "__main__":
    main()
