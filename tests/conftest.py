"""Shared fixtures: settings in a temporary state dir, runtimes on fakes or real Docker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.config import Settings, load_settings
from runtime.providers.base import LABEL_INSTANCE, LABEL_MANAGED
from runtime.providers.docker import MANAGED_NETWORK, DockerProvider
from tests.fakes import FakeProvider

ROOT = Path(__file__).resolve().parent.parent

MakeSettings = Callable[..., Settings]


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
    import docker

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


def leftover_containers(client: Any, instance_id: str) -> list[Any]:
    """Containers a runtime instance created that still exist."""
    return client.containers.list(
        all=True, filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance_id}"]}
    )


def leftover_volumes(client: Any, instance_id: str) -> list[Any]:
    """Volumes a runtime instance created that still exist."""
    return client.volumes.list(filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance_id}"]})


def remove_leftovers(client: Any, instance_id: str) -> list[str]:
    """Remove what an instance left behind; return the names of what was removed."""
    containers = leftover_containers(client, instance_id)
    for container in containers:
        container.remove(force=True, v=True)
    volumes = leftover_volumes(client, instance_id)
    for volume in volumes:
        volume.remove(force=True)
    return [c.name for c in containers] + [v.name for v in volumes]


MakeDockerRuntime = Callable[..., Runtime]


@pytest.fixture
def make_docker_runtime(make_settings: MakeSettings, docker_client: Any) -> Iterator[MakeDockerRuntime]:
    """Runtimes on the real Docker daemon; the test fails if any leaves containers or volumes.

    Keyword arguments go to the settings, except ``runtimes`` (the provider's OCI runtime
    preference, e.g. ``("runc",)``).
    """
    started: list[Runtime] = []

    def make(runtimes: tuple[str, ...] | None = None, **changes: Any) -> Runtime:
        settings = make_settings(**changes)

        def providers(instance_id: str) -> dict[str, Any]:
            return {
                "gvisor": DockerProvider(
                    instance_id=instance_id,
                    default_image=settings.default_image,
                    network_name=settings.network_name,
                    runtimes=runtimes or ("runsc", "runc"),
                )
            }

        runtime = Runtime(settings, providers=providers).start()
        started.append(runtime)
        return runtime

    yield make
    leaked: list[str] = []
    for runtime in started:
        instance_id = runtime.instance_id
        runtime.stop()
        leaked += remove_leftovers(docker_client, instance_id)
    assert not leaked, f"the test left these behind: {leaked}"


@pytest.fixture
def docker_runtime(make_docker_runtime: MakeDockerRuntime) -> Runtime:
    """A runtime on the real Docker daemon (gVisor), checked for leftovers afterwards."""
    return make_docker_runtime()
