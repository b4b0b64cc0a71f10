"""The e2b provider's overhead over the raw SDK, on the E2B stand-in (real E2B is unreachable here).

Both paths drive the same stand-in, so the difference is what the runtime adds (the
ZeroMQ round trip, the actors, the adapter's path rules and translation), not E2B's own
latency, which only a run against real E2B can show. Alternating, in one run:

- ``sdk commands.run``: the SDK's ``commands.run("true")`` on a sandbox (the baseline);
- ``runtime exec``: ``client.exec(id, ["true"])`` over TCP through the runtime;
- ``sdk files.write+read`` against ``runtime write_file+read_file`` (1 KiB);
- ``sdk create+kill`` against ``runtime create+destroy``.

    python -m bench.e2b [--execs 100] [--files 50] [--creates 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

from e2b import Sandbox

from bench.common import bench_settings
from bench.stats import summary, table
from runtime.app import Runtime
from runtime.providers.docker import DockerProvider
from runtime.wire import Client
from tests.e2b_serve import e2b_provider
from tests.e2b_standin import ControlPlane, attach


def _timed(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _create_and_kill(plane: ControlPlane) -> None:
    sandbox = attach(Sandbox.create(timeout=600, **plane.api_params()))
    sandbox.commands.run("mkdir -p /workspace", user="root")
    sandbox.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execs", type=int, default=100)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--creates", type=int, default=10)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as state, ControlPlane() as plane:
        settings = bench_settings(state, e2b_api_key=plane.api_key, e2b_api_url=plane.url, default_provider="e2b")

        def providers(instance_id: str) -> dict[str, Any]:
            docker = DockerProvider(instance_id=instance_id, default_image=settings.default_image)
            return {"gvisor": docker, "e2b": e2b_provider(settings, instance_id)}

        runtime = Runtime(settings, providers=providers).start()
        try:
            with Client(runtime.endpoint, runtime.token, timeout_s=120) as client:
                workspace = client.create().id
                sandbox = attach(Sandbox.create(timeout=600, **plane.api_params()))
                sandbox.commands.run("mkdir -p /workspace", user="root")
                payload = b"x" * 1024

                def measure(name: str, call: Callable[[], Any]) -> None:
                    samples.setdefault(name, []).append(_timed(call))

                for _ in range(args.execs):
                    measure("sdk commands.run true", lambda: sandbox.commands.run("true", user="root"))
                    measure("runtime exec true", lambda: client.exec(workspace, ["true"]))
                for _ in range(args.files):
                    measure(
                        "sdk files.write+read 1KiB",
                        lambda: (
                            sandbox.files.write("/workspace/f", payload, user="root"),
                            sandbox.files.read("/workspace/f", format="bytes", user="root"),
                        ),
                    )
                    measure(
                        "runtime write_file+read_file 1KiB",
                        lambda: (client.write_file(workspace, "f", payload), client.read_file(workspace, "f")),
                    )
                for _ in range(args.creates):
                    measure("sdk create+kill", lambda: _create_and_kill(plane))
                    measure("runtime create+destroy", lambda: client.destroy(client.create().id))
                sandbox.kill()
                client.destroy(workspace)
        finally:
            runtime.stop()
    pairs = [
        ("sdk commands.run true", "runtime exec true"),
        ("sdk files.write+read 1KiB", "runtime write_file+read_file 1KiB"),
        ("sdk create+kill", "runtime create+destroy"),
    ]
    for baseline, ours in pairs:
        print(table([summary(baseline, samples[baseline], "ms"), summary(ours, samples[ours], "ms")], baseline))
        print()


if __name__ == "__main__":
    main()
