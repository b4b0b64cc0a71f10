"""``exec true``, the agent step, and file write/read of 1 KB and 10 MB, beside the raw docker SDK and the peer.

Per OCI runtime, one workspace with the product's default limits (2 CPUs, 4 GiB) and
a raw container made with the same options (``bench.workspaces._raw_create``), in one
run, alternating (blocks of ``exec true`` per path, as ``bench.agent`` does: a docker
exec leaves the daemon busy for a few ms after it returns):

- ``exec true``: ``client.exec`` through the runtime (its agent), against ``exec_run``,
  and the peer's ``execute_command("true")`` (runsc);
- the agent step (``bench.agent``'s loop: write a Python file, run it, read what it
  wrote) against ``put_archive`` + ``exec_run`` + ``get_archive``, and the peer's
  ``copy_to_runtime`` + ``execute_command`` + ``copy_from_runtime`` (runsc);
- file write and read (runsc): ``write_file``/``read_file`` against ``put_archive``/
  ``get_archive`` (tar made or read in this process, as a caller must).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import docker

from bench.agent import CPU, MEMORY, _raw_loop, _runtime_loop, _tar, _untar, wait_agent
from bench.harness.context import Context
from bench.harness.peer import PEER_LABEL, PeerProcess
from bench.harness.results import Scenario, Target, stats
from bench.harness.server import RuntimeProcess
from bench.harness.timing import Paths, alternate, timer
from bench.workspaces import _raw_create, _raw_remove
from runtime.wire import Client

__all__ = ["run"]

SIZES = {"1 KB": 1024, "10 MB": 10 << 20}


def _exec_and_step(
    ctx: Context, oci_runtime: str, client: Client, workspace_id: str, raw: Any, peer: PeerProcess | None
) -> list[Scenario]:
    in_sandbox: list[float] = []  # the command's own time, as the agent timed it (warm-up first)

    def our_exec() -> None:
        in_sandbox.append(client.exec(workspace_id, ["true"]).duration_ms / 1000)

    exec_paths: Paths = {"baseline": timer(lambda: raw.exec_run(["true"])), "ours": timer(our_exec)}
    counter = iter(range(10**6))
    step_paths: Paths = {
        "baseline": timer(lambda: _raw_loop(raw, next(counter))),
        "ours": timer(lambda: _runtime_loop(client, workspace_id, next(counter))),
    }
    if peer is not None:
        exec_paths["peer"] = lambda: peer.call("exec")
        step_paths["peer"] = lambda: peer.call("step")
    block = 20 if not ctx.quick else 10
    warmup = 5
    execs = alternate(exec_paths, ctx.n(300, 40) // block, block=block, warmup=warmup)
    own = stats(in_sandbox[warmup:])
    assert own is not None
    steps = alternate(step_paths, ctx.n(60, 8), warmup=2)
    assert _raw_loop(raw, 10) == _runtime_loop(client, workspace_id, 10) == b"45"
    exec_target = None
    if oci_runtime == "runsc":
        exec_target = Target(
            "exec true under runsc: p50 <= 10 ms and >= 8x faster than raw exec_run", p50_max_s=0.010, speedup_min=8
        )
    return [
        Scenario(
            name=f"exec true ({oci_runtime})",
            group="exec",
            ours=execs["ours"],
            baseline=execs["baseline"],
            peer=execs.get("peer", []),
            baseline_label="raw exec_run",
            peer_label=f"{PEER_LABEL} execute_command" if peer else "",
            target=exec_target,
            extra={"in_sandbox_p50_s": own.p50},
            note=f"of which `true`'s own run in the workspace (its process started, run and reaped, as the "
            f"agent timed it) p50 {own.p50 * 1000:.2f} ms",
        ),
        Scenario(
            name=f"agent step ({oci_runtime})",
            group="exec",
            ours=steps["ours"],
            baseline=steps["baseline"],
            peer=steps.get("peer", []),
            baseline_label="raw put_archive + exec_run + get_archive",
            peer_label=f"{PEER_LABEL} copy_to + execute + copy_from" if peer else "",
            note="write a Python file, run it with python3, read the file it wrote",
        ),
    ]


def _file_paths(client: Client, workspace_id: str, raw: Any, name: str, data: bytes) -> tuple[Paths, Paths]:
    """The write paths and the read paths of one file."""

    def raw_write() -> None:
        raw.put_archive("/workspace", _tar(name, data))

    def our_write() -> None:
        client.write_file(workspace_id, name, data)

    def raw_read() -> None:
        chunks, _ = raw.get_archive(f"/workspace/{name}")
        assert len(_untar(chunks)) == len(data)

    def our_read() -> None:
        assert len(client.read_file(workspace_id, name)) == len(data)

    return {"baseline": timer(raw_write), "ours": timer(our_write)}, {
        "baseline": timer(raw_read),
        "ours": timer(our_read),
    }


def _files(ctx: Context, client: Client, workspace_id: str, raw: Any) -> list[Scenario]:
    scenarios = []
    for label, size in SIZES.items():
        writes, reads = _file_paths(client, workspace_id, raw, f"blob-{size}", os.urandom(size))
        steps = ctx.n(60, 5) if size < 1 << 20 else ctx.n(20, 3)
        written = alternate(writes, steps, warmup=1)  # the warm-up write also makes the file to read
        read = alternate(reads, steps, warmup=1)
        for verb, samples, baseline in (
            ("write", written, "raw put_archive (tar built here)"),
            ("read", read, "raw get_archive (tar read here)"),
        ):
            scenarios.append(
                Scenario(
                    name=f"file {verb} {label} (runsc)",
                    group="files",
                    ours=samples["ours"],
                    baseline=samples["baseline"],
                    baseline_label=baseline,
                )
            )
    return scenarios


def run(ctx: Context) -> list[Scenario]:
    """runsc (with the peer and the file scenarios), then runc."""
    scenarios: list[Scenario] = []
    docker_client = docker.from_env(version="auto")
    try:
        for oci_runtime in ("runsc", "runc"):
            with (
                RuntimeProcess(oci_runtime, default_cpu=CPU, default_memory=MEMORY) as runtime,
                Client(runtime.endpoint, runtime.token, timeout_s=120) as client,
                ctx.peer(oci_runtime) if oci_runtime == "runsc" else contextlib.nullcontext() as peer,
            ):
                record = client.create(labels={"bench": "exec"})
                name = _raw_create(
                    docker_client, oci_runtime, 0, cpu=CPU, memory=MEMORY, prefix=ctx.prefix(f"exec-{oci_runtime}"),
                    labels=ctx.labels,
                )  # fmt: skip
                try:
                    if peer is not None:
                        peer.call("open")
                    wait_agent(client, record.id)
                    raw = docker_client.containers.get(name)
                    scenarios += _exec_and_step(ctx, oci_runtime, client, record.id, raw, peer)
                    if oci_runtime == "runsc":
                        scenarios += _files(ctx, client, record.id, raw)
                finally:
                    if peer is not None:
                        with contextlib.suppress(Exception):
                            peer.call("close")
                    _raw_remove(docker_client, name)
                    client.destroy(record.id)
            print(f"   {oci_runtime}: done")
    finally:
        docker_client.close()
    return scenarios
