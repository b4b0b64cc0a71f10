"""The runtime with its ``e2b`` provider behind the E2B stand-in, as a process tests can kill.

``python -m tests.e2b_serve`` is ``workspaces serve`` with one difference: the ``e2b``
provider's sandboxes get the stand-in's commands and files (``tests.e2b_standin.attach``),
because the real ones live behind E2B's envd, which cannot be reached here. Its control
plane is the real SDK talking to the stand-in's REST API at ``E2B_API_URL``.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from e2b import Sandbox

from runtime.app import Runtime
from runtime.config import Settings, load_settings
from runtime.monitoring.logs import configure
from runtime.providers.base import Provider
from runtime.providers.docker import DockerProvider
from runtime.providers.e2b import E2BApi, E2BProvider
from runtime.providers.e2b import e2b_provider as runtime_e2b_provider
from tests.e2b_standin import ControlPlane, attach

__all__ = ["StandInApi", "e2b_provider", "providers", "sandbox_ids"]


def sandbox_ids(plane: ControlPlane) -> list[str]:
    """Every sandbox the stand-in has, running or paused, through the SDK's own listing."""
    pages = Sandbox.list(**plane.api_params())
    found: list[str] = []
    while pages.has_next:
        found += [info.sandbox_id for info in pages.next_items()]
    return sorted(found)


class StandInApi(E2BApi):
    """The real SDK's control plane, with the stand-in behind each sandbox's commands and files."""

    def adopt(self, sandbox: Sandbox) -> Sandbox:
        return attach(sandbox)


def e2b_provider(settings: Settings, instance_id: str) -> E2BProvider:
    """The ``e2b`` provider of ``settings`` (``E2B_API_URL`` is the stand-in's) on ``StandInApi``."""
    return runtime_e2b_provider(settings, instance_id, StandInApi)


def providers(settings: Settings, instance_id: str) -> dict[str, Provider]:
    """What ``Runtime`` builds by default, with the ``e2b`` provider on the stand-in."""
    return {
        "gvisor": DockerProvider(
            instance_id=instance_id, default_image=settings.default_image, network_name=settings.network_name
        ),
        "e2b": e2b_provider(settings, instance_id),
    }


def main() -> None:
    configure(logging.INFO)
    settings = load_settings()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runtime = Runtime(settings, providers=lambda instance_id: providers(settings, instance_id)).start()
    try:
        while not stop.wait(0.2) and not runtime.wait_failed(0):
            pass
    finally:
        runtime.stop()


if __name__ == "__main__":
    main()
