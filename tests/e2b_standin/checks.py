"""What tests of (and with) the E2B stand-in check: fakes against the SDK, containers, planes.

Kept beside the stand-in so every test module using it checks the same things the same
way: that a fake's methods keep the SDK's signatures, that a plane leaves no container.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2b_standin.containers import LABEL_SANDBOX, docker_client, leftover_standin_containers
from tests.e2b_standin.control import ControlPlane

__all__ = [
    "container_state",
    "overridden_methods",
    "planes",
    "signature_mismatches",
    "start_elsewhere",
    "unserved_methods",
]

_ROOT = Path(__file__).resolve().parents[2]  # the checkout, where `tests` is a package

# Run by another Python process: attach to the sandbox by its id alone and leave a command running.
_ELSEWHERE = """
import sys
from e2b import Sandbox
from tests.e2b_standin import attach
_, sandbox_id, api_key, api_url, command = sys.argv
sandbox = attach(Sandbox.connect(sandbox_id, api_key=api_key, api_url=api_url, domain="elsewhere.local"))
print(sandbox.commands.run(command, background=True).pid)
"""


def overridden_methods(fake: type, sdk: type) -> list[str]:
    """The methods ``fake`` defines that ``sdk`` has too (dunders aside, private ones included)."""
    return [
        name
        for name, value in vars(fake).items()
        if callable(value) and not (name.startswith("__") and name.endswith("__")) and hasattr(sdk, name)
    ]


def _public_methods(sdk: type) -> set[str]:
    return {name for name, value in vars(sdk).items() if callable(value) and not name.startswith("_")}


def signature_mismatches(fake: type, sdk: type) -> list[str]:
    """Each method of ``fake`` overriding ``sdk``, or public in ``sdk``, whose signature differs."""
    mismatches = []
    for name in dict.fromkeys(overridden_methods(fake, sdk) + sorted(_public_methods(sdk))):
        ours, theirs = inspect.signature(getattr(fake, name)), inspect.signature(getattr(sdk, name))
        if ours != theirs:
            mismatches.append(f"{fake.__name__}.{name}{ours} != {sdk.__name__}.{name}{theirs}")
    return mismatches


def unserved_methods(fake: type, sdk: type) -> set[str]:
    """The public methods of ``sdk`` that ``fake`` does not define itself."""
    return _public_methods(sdk) - set(vars(fake))


def container_state(sandbox_id: str, client: Any = None) -> str | None:
    """Docker's state of the sandbox's container (``running``, ``paused``...), ``None`` if there is none."""
    found = (client or docker_client()).api.containers(all=True, filters={"label": f"{LABEL_SANDBOX}={sandbox_id}"})
    return str(found[0]["State"]) if found else None


@contextmanager
def planes(client: Any = None) -> Iterator[Callable[..., ControlPlane]]:
    """Make started control planes (keyword arguments as ``ControlPlane``'s); close them all at the
    end and fail if any of their containers is left. (Only theirs: other test sessions on the
    same Docker daemon may have planes of their own running.)"""
    started: list[ControlPlane] = []

    def make(**options: Any) -> ControlPlane:
        plane = ControlPlane(client=client, **options).start()
        started.append(plane)
        return plane

    try:
        yield make
    finally:
        for plane in started:
            plane.close()
    leftovers = [name for plane in started for name in leftover_standin_containers(plane.plane_id, client)]
    assert leftovers == [], f"stand-in containers left behind: {leftovers}"


def start_elsewhere(plane: ControlPlane, sandbox_id: str, command: str) -> int:
    """Start ``command`` in the sandbox from another Python process, which then exits; its pid."""
    child = subprocess.run(
        [sys.executable, "-c", _ELSEWHERE, sandbox_id, plane.api_key, plane.url, command],
        cwd=_ROOT,
        env={**os.environ, "PYTHONPATH": str(_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(child.stdout)
