"""The agent's hot path: `exec true` and a typical agent loop, against raw docker, on runsc and runc.

Workspaces and the raw container get the product's default limits (2 CPUs, 4 GiB).

In one run, per OCI runtime, alternating so machine noise hits every path alike (`exec
true` in blocks of ``--block``: a ``docker exec`` leaves the daemon and the sandbox
busy for a few milliseconds after it returns, which would otherwise be charged to the
command after it):

- ``raw exec_run``: the docker SDK's ``exec_run(["true"])`` on a container made with the
  provider's options (the baseline);
- ``runtime exec``: ``client.exec(id, ["true"])`` over TCP through the runtime, which runs
  it through the workspace's agent;
- the agent loop, 100 iterations each of: write a Python file, run it, read what it wrote -
  through the runtime (``write_file``, ``exec``, ``read_file``) against the raw SDK
  (``put_archive``, ``exec_run``, ``get_archive``).

    python -m bench.agent [--execs 300] [--block 20] [--loops 100] [--runtimes runsc,runc]
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from collections.abc import Callable
from typing import Any

import docker

from bench.common import bench_settings, docker_providers
from bench.stats import summary, table
from bench.workspaces import _raw_create, _raw_remove
from runtime.app import Runtime
from runtime.wire import Client

CPU, MEMORY = 2.0, 4 << 30  # the product's defaults (WORKSPACE_DEFAULT_CPU, WORKSPACE_DEFAULT_MEMORY)
SCRIPT = b"import sys\nopen('/workspace/result.txt', 'w').write(str(sum(range(%d))))\n"


def _timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _untar(chunks: Any) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
        member = archive.next()
        assert member is not None
        extracted = archive.extractfile(member)
        assert extracted is not None
        return extracted.read()


def _raw_loop(container: Any, n: int) -> bytes:
    container.put_archive("/workspace", _tar("task.py", SCRIPT % n))
    exit_code, _ = container.exec_run(["python3", "/workspace/task.py"])
    assert exit_code == 0
    chunks, _ = container.get_archive("/workspace/result.txt")
    return _untar(chunks)


def _runtime_loop(client: Client, workspace_id: str, n: int) -> bytes:
    client.write_file(workspace_id, "task.py", SCRIPT % n)
    assert client.exec(workspace_id, ["python3", "task.py"]).exit_code == 0
    return client.read_file(workspace_id, "result.txt")


def wait_agent(client: Client, workspace_id: str, timeout_s: float = 60) -> None:
    """Wait (up to ``timeout_s``) until execs run through the workspace's agent, which starts after create."""
    deadline = time.monotonic() + timeout_s
    while client.exec(workspace_id, ["true"]).via != "agent" and time.monotonic() < deadline:
        time.sleep(0.05)


def bench_runtime(
    oci_runtime: str, execs: int, loops: int, block: int
) -> tuple[list[dict[str, float | str]], dict[str, int]]:
    """Measure one OCI runtime; returns the table rows and how the runtime's execs ran."""
    docker_client = docker.from_env(version="auto")
    samples: dict[str, list[float]] = {"raw exec_run": [], "runtime exec": [], "raw loop": [], "runtime loop": []}
    via: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as state:
        settings = bench_settings(state, default_cpu=CPU, default_memory=MEMORY)
        with (
            Runtime(settings, providers=docker_providers(settings, oci_runtime)) as runtime,
            Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
        ):
            record = client.create()
            raw_name = _raw_create(docker_client, oci_runtime, 0, cpu=CPU, memory=MEMORY)
            raw = docker_client.containers.get(raw_name)
            try:
                wait_agent(client, record.id)
                for _ in range(5):  # warm both paths up
                    raw.exec_run(["true"])
                    client.exec(record.id, ["true"])
                for _ in range(execs // block):
                    for _ in range(block):
                        samples["raw exec_run"].append(_timed(lambda: raw.exec_run(["true"])))
                    for _ in range(block):
                        began = time.perf_counter()
                        result = client.exec(record.id, ["true"])
                        samples["runtime exec"].append(time.perf_counter() - began)
                        via[result.via] = via.get(result.via, 0) + 1
                for n in range(loops):
                    samples["raw loop"].append(_timed(lambda n=n: _raw_loop(raw, n)))
                    samples["runtime loop"].append(_timed(lambda n=n: _runtime_loop(client, record.id, n)))
                assert _raw_loop(raw, 10) == _runtime_loop(client, record.id, 10) == b"45"
            finally:
                _raw_remove(docker_client, raw_name)
                client.destroy(record.id)
    rows = [summary(f"{oci_runtime}: {name}", values, unit="ms") for name, values in samples.items()]
    return rows, via


def main() -> None:
    """Run the benchmark and print two tables per OCI runtime."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--execs", type=int, default=300)
    parser.add_argument("--loops", type=int, default=100)
    parser.add_argument("--block", type=int, default=20, help="execs per path before switching to the other")
    parser.add_argument("--runtimes", default="runsc,runc")
    args = parser.parse_args()
    for oci_runtime in args.runtimes.split(","):
        rows, via = bench_runtime(oci_runtime, args.execs, args.loops, args.block)
        print(table(rows[:2], baseline=f"{oci_runtime}: raw exec_run"))
        print(f"  (runtime execs ran through: {via})")
        print(table(rows[2:], baseline=f"{oci_runtime}: raw loop"))
        loop_total = sum(float(row["mean"]) for row in rows[2:3]) * args.loops / 1000
        runtime_total = float(rows[3]["mean"]) * args.loops / 1000
        print(f"  {args.loops} iterations end to end: raw {loop_total:.2f} s, runtime {runtime_total:.2f} s")
        print()


if __name__ == "__main__":
    main()
