"""Agent workspaces: isolated, resource-limited Linux workspaces for AI agents.

The public facade: start a runtime (``Runtime``), configure it (``load_settings``,
``Settings``), talk to it (``Client``, ``Subscriber``) and catch its errors
(``WorkspaceError`` and its families in ``runtime.errors``).
"""

from runtime.app import Runtime
from runtime.client import Client, Subscriber
from runtime.config import Settings, load_settings
from runtime.errors import WorkspaceError
from runtime.messages import ExecResult, WorkspaceRecord
from runtime.version import __version__

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
