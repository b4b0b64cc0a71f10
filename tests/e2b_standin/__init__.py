"""A faithful local stand-in of E2B, for tests: its REST control plane and its sandboxes' envd.

E2B's cloud cannot be reached from the tests, so the real ``e2b`` SDK is pointed at
``ControlPlane`` (``api_url``), which answers as E2B's API does and backs every sandbox
with a Docker container; ``attach`` then gives the SDK's ``Sandbox`` objects commands and
files that really run in that container. See ``control`` and ``sandbox`` for the details.

    with ControlPlane() as plane:
        sandbox = attach(Sandbox.create(**plane.api_params()))
        sandbox.commands.run("echo hi").stdout  # "hi\\n"
"""

from tests.e2b_standin.containers import (
    LABEL_PLANE,
    LABEL_SANDBOX,
    leftover_standin_containers,
    remove_all_standin_containers,
)
from tests.e2b_standin.control import DEFAULT_API_KEY, ENVD_VERSION, ControlPlane, RecordedRequest
from tests.e2b_standin.sandbox import StandInCommandHandle, StandInCommands, StandInFilesystem, attach

__all__ = [
    "DEFAULT_API_KEY",
    "ENVD_VERSION",
    "LABEL_PLANE",
    "LABEL_SANDBOX",
    "ControlPlane",
    "RecordedRequest",
    "StandInCommandHandle",
    "StandInCommands",
    "StandInFilesystem",
    "attach",
    "leftover_standin_containers",
    "remove_all_standin_containers",
]
