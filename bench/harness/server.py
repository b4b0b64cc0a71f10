"""The runtime under test in its own process, pinned to one OCI runtime, and the sweep that follows it.

A deployed runtime is its own process (``workspaces serve``); measuring it from a
separate client process keeps the client's work off its GIL and lets its RSS and CPU be
read alone. ``workspaces serve`` always prefers runsc, so the harness starts this module
instead (``python -m bench.harness.server CONFIG``): the same ``Runtime``, with the
bench's settings and the Docker provider pinned to ``runsc`` or ``runc``. It prints one
JSON line (endpoint, token, instance id) once it serves, and stops when its standard
input closes.

A runtime's stop leaves workspaces running (the next start takes them back), so a
scenario destroys what it made through the client; ``RuntimeProcess`` then sweeps any
container or volume still labelled with the instance id, even after an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import docker

from runtime.providers.base import LABEL_INSTANCE

__all__ = ["RuntimeProcess", "sweep"]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token-0123456789abcdef"


def sweep(label: str) -> int:
    """Remove every container and volume carrying ``label`` (``key=value``); return how many containers."""
    client = docker.from_env(version="auto")
    try:
        api = client.api
        removed = 0
        for container in api.containers(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                api.remove_container(container["Id"], force=True, v=True)
                removed += 1
        for volume in api.volumes(filters={"label": label}).get("Volumes") or []:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                api.remove_volume(volume["Name"], force=True)
        return removed
    finally:
        client.close()


class RuntimeProcess:
    """A runtime serving in a child process for the length of a ``with`` block.

    Args:
        oci_runtime: ``runsc`` or ``runc``.
        **settings: ``Settings`` fields over ``bench.common.bench_settings`` (``default_cpu``,
            ``default_memory``, ``warm_pool_size``...).

    Attributes:
        endpoint, token, instance_id, pid: Known once the block is entered.
    """

    def __init__(self, oci_runtime: str = "runsc", **settings: Any) -> None:
        self.oci_runtime = oci_runtime
        self.settings = settings
        self.endpoint = self.token = self.instance_id = ""
        self.pid = 0
        self._state = tempfile.TemporaryDirectory(prefix="aw-bench-")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RuntimeProcess:
        config = {"oci_runtime": self.oci_runtime, "state_dir": self._state.name, "settings": self.settings}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.harness.server", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(30)
            self._state.cleanup()
            raise RuntimeError(f"the runtime under test exited with {self._process.returncode} before serving")
        ready = json.loads(line)
        self.endpoint, self.token, self.instance_id = ready["endpoint"], ready["token"], ready["instance_id"]
        self.pid = self._process.pid
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        try:
            if process is not None:
                assert process.stdin is not None
                with contextlib.suppress(OSError):
                    process.stdin.close()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(30)
        finally:
            if self.instance_id:
                sweep(f"{LABEL_INSTANCE}={self.instance_id}")
            self._state.cleanup()


def _serve(config: dict[str, Any]) -> None:
    from bench.common import bench_settings, docker_providers
    from runtime.app import Runtime

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # host CPU alerts are expected here
    changes = dict(config["settings"])
    settings = bench_settings(config["state_dir"], auth_token=TOKEN, **changes)
    runtime = Runtime(settings, providers=docker_providers(settings, config["oci_runtime"])).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        ready = {"endpoint": runtime.endpoint, "token": runtime.token, "instance_id": runtime.instance_id}
        print(json.dumps(ready), flush=True)

        def wait_stdin() -> None:
            sys.stdin.buffer.read()
            stop.set()

        threading.Thread(target=wait_stdin, daemon=True).start()
        stop.wait()
    finally:
        runtime.stop()


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)  # the runtime stopped; do not wait for the stdin reader
