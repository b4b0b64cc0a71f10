"""What the Docker benchmarks share: a throwaway runtime's settings and providers."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.config import Settings, load_settings
from runtime.providers.docker import DockerProvider


def bench_settings(state_dir: str, **changes: Any) -> Settings:
    """Settings for a runtime in ``state_dir`` on random loopback ports, 1 CPU and 512M workspaces."""
    values: dict[str, Any] = {
        "enabled": True,
        "state_dir": Path(state_dir),
        "zmq_endpoint": "tcp://127.0.0.1:*",
        "zmq_events_endpoint": "tcp://127.0.0.1:*",
        "default_cpu": 1.0,
        "default_memory": 512 << 20,
        "max_concurrent": 1000,
    }
    values.update(changes)
    return load_settings(env={}).replace(**values)


def docker_providers(settings: Settings, oci_runtime: str) -> Callable[[str], dict[str, DockerProvider]]:
    """The gvisor provider pinned to one OCI runtime (``runsc`` or ``runc``)."""

    def providers(instance_id: str) -> dict[str, DockerProvider]:
        provider = DockerProvider(
            instance_id=instance_id, default_image=settings.default_image, runtimes=(oci_runtime,)
        )
        return {"gvisor": provider}

    return providers


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
