"""Agent workspaces: isolated, resource-limited Linux workspaces for AI agents.

The public facade: start a runtime (``Runtime``), configure it (``load_settings``,
``Settings``), talk to it (``Client``, ``Subscriber``) and catch its errors
(``WorkspaceError`` and its families in ``runtime.errors``).
"""

from typing import TYPE_CHECKING, Any

from runtime.client import Client, Subscriber
from runtime.config import Settings, load_settings
from runtime.errors import WorkspaceError
from runtime.messages import ExecResult, WorkspaceRecord
from runtime.version import __version__

if TYPE_CHECKING:
    from runtime.app import Runtime

__all__ = [
    "Client",
    "ExecResult",
    "Runtime",
    "Settings",
    "Subscriber",
    "WorkspaceError",
    "WorkspaceRecord",
    "__version__",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    # Runtime is imported on first use: runtime.app needs the actors package, whose
    # modules import runtime's, so importing it here would make a cycle.
    if name == "Runtime":
        from runtime.app import Runtime

        return Runtime
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
