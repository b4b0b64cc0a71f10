"""Shared fixtures: settings in a temporary state dir, runtimes on fakes or real Docker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from runtime.app import Runtime
from runtime.config import Settings, load_settings
from runtime.providers.base import LABEL_INSTANCE, LABEL_MANAGED
from runtime.providers.docker import MANAGED_NETWORK, DockerProvider
from runtime.providers.firecracker.guest import GuestBuild, build_guest
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parent.parent
FIRECRACKER_STANDIN = ROOT / "tests" / "firecracker_standin" / "bin" / "firecracker"
"""The stand-in for the ``firecracker`` binary (``tests/firecracker_standin``)."""

MakeSettings = Callable[..., Settings]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the Docker daemon run last, so nothing else runs across a restart."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_docker") is not None)


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    """Settings for a test runtime: enabled, random loopback ports, small workspaces."""

    def make(**changes: Any) -> Settings:
        base = load_settings(env={"WORKSPACE_CONFIG": str(ROOT / "configs" / "default.toml")})
        values: dict[str, Any] = {
            "enabled": True,
            "state_dir": tmp_path / "state",
            "zmq_endpoint": "tcp://127.0.0.1:*",
            "zmq_events_endpoint": "tcp://127.0.0.1:*",
            "default_cpu": 1.0,
            "default_memory": 256 << 20,
            "default_disk": 1 << 30,
            # The sampler's alerts (host CPU, reserved CPU...) would depend on the machine:
            # tests that want samples set their own interval.
            "sample_interval_s": 3600.0,
            # No MCP servers unless a test declares some (a configs/mcp.toml in the checkout is not the tests').
            "mcp_config": tmp_path / "mcp-none.toml",
        }
        values.update(changes)
        return base.replace(**values)

    return make


@pytest.fixture
def fake_provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def fake_runtime(make_settings: MakeSettings, fake_provider: FakeProvider) -> Iterator[Runtime]:
    """A runtime whose only provider is an in-memory fake (fast tier)."""
    runtime = Runtime(make_settings(), providers={"gvisor": fake_provider}).start()
    try:
        yield runtime
    finally:
        runtime.stop()


# ---------------------------------------------------------------------- real Docker


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The real Docker daemon (``make test`` starts it); fails loudly when absent.

    At the end of the session, the managed workspace network is removed if this
    session created it.
    """
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need the Docker daemon (run `make test`, which starts it): {exc}")
    had_network = bool(client.networks.list(names=[MANAGED_NETWORK]))
    yield client
    if not had_network:
        for network in client.networks.list(names=[MANAGED_NETWORK]):
            network.remove()
    client.close()


def _labels(instance_id: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance_id}"]}


def leftover_containers(client: Any, instance_id: str) -> list[str]:
    """Names of the containers a runtime instance created that still exist.

    Listed in one call (the SDK's high-level list inspects each container and fails
    when one disappears in between).
    """
    return [c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=_labels(instance_id))]


def leftover_volumes(client: Any, instance_id: str) -> list[str]:
    """Names of the volumes a runtime instance created that still exist."""
    return [v["Name"] for v in client.api.volumes(filters=_labels(instance_id)).get("Volumes") or []]


def remove_leftovers(client: Any, instance_id: str) -> list[str]:
    """Remove what an instance left behind; return the names of what was removed."""
    containers = leftover_containers(client, instance_id)
    for name in containers:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(name, force=True, v=True)
    volumes = leftover_volumes(client, instance_id)
    for name in volumes:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_volume(name, force=True)
    return containers + volumes


MakeDockerRuntime = Callable[..., Runtime]


@pytest.fixture
def make_docker_runtime(make_settings: MakeSettings, docker_client: Any) -> Iterator[MakeDockerRuntime]:
    """Runtimes on the real Docker daemon; the test fails if any leaves containers or volumes.

    Keyword arguments go to the settings, except ``runtimes`` (the provider's OCI runtime
    preference, e.g. ``("runc",)``) and ``more_providers`` (providers beside ``gvisor``,
    built from the settings and the instance id).
    """
    started: list[tuple[Runtime, str]] = []

    def make(
        runtimes: tuple[str, ...] | None = None,
        more_providers: Callable[[Settings, str], dict[str, Any]] | None = None,
        **changes: Any,
    ) -> Runtime:
        settings = make_settings(**changes)

        def providers(instance_id: str) -> dict[str, Any]:
            built = {
                "gvisor": DockerProvider(
                    instance_id=instance_id,
                    default_image=settings.default_image,
                    network_name=settings.network_name,
                    runtimes=runtimes or ("runsc", "runc"),
                    read_only_root=settings.read_only_root,
                )
            }
            return built | (more_providers(settings, instance_id) if more_providers else {})

        runtime = Runtime(settings, providers=providers).start()
        started.append((runtime, runtime.instance_id))
        return runtime

    yield make
    leaked: list[str] = []
    for runtime, instance_id in started:
        runtime.stop()  # stopping twice is harmless
        leaked += remove_leftovers(docker_client, instance_id)
    assert not leaked, f"the test left these behind: {leaked}"


@pytest.fixture
def docker_runtime(make_docker_runtime: MakeDockerRuntime) -> Runtime:
    """A runtime on the real Docker daemon (gVisor), checked for leftovers afterwards."""
    return make_docker_runtime()


# ---------------------------------------------------------------------- MCP servers

MCP_DEMO_IMAGE = "agent-workspaces/mcp-demo:latest"
MCP_DEMO_COMMAND = ["python3", "/opt/mcp/server.py"]
"""The demo server (examples/mcp/demo_server.py: tools echo, add, whoami) in its image; `--http PORT` for HTTP."""


@pytest.fixture(scope="session")
def mcp_demo_image(docker_client: Any) -> str:
    """The demo MCP server's image, built from the base image (kept between runs, like the base image)."""
    script = ROOT / "scripts" / "build-mcp-demo-image.sh"
    subprocess.run([str(script), MCP_DEMO_IMAGE], check=True, cwd=ROOT, env={**os.environ, "PY": sys.executable})
    return MCP_DEMO_IMAGE


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def write_mcp_config(path: Path, servers: Sequence[dict[str, Any]]) -> Path:
    """Write ``servers`` as a WORKSPACE_MCP_CONFIG file (``[[servers]]`` tables); return its path."""
    lines = []
    for server in servers:
        lines.append("[[servers]]")
        lines += [f"{key} = {_toml(value)}" for key, value in server.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="session")
def firecracker_guest(tmp_path_factory: pytest.TempPathFactory) -> GuestBuild:
    """The real guest kernel and initrd, built from Debian's packages once per session."""
    return build_guest(tmp_path_factory.mktemp("firecracker-guest"))
