"""Agent workspaces: isolated, resource-limited Linux workspaces for AI agents.

The client-side facade: configure (``load_settings``, ``Settings``), talk to a runtime
(``Client``, ``Subscriber``, ``Watch`` for its events in order, ``follow`` for a
streamed command's output), read its records and catch its errors (``WorkspaceError``
and its families in ``runtime.errors``). The runtime itself - the wiring of the actors
above everything in this package - is ``runtime.app.Runtime``; it is not re-exported
here, because this package is also the layer the actors stand on.
"""

from runtime.config import Settings, load_settings
from runtime.errors import WorkspaceError
from runtime.messages import ExecResult, Snapshot, WorkspaceRecord
from runtime.version import __version__
from runtime.wire import Client, Subscriber, Watch, follow

__all__ = [
    "Client",
    "ExecResult",
    "Settings",
    "Snapshot",
    "Subscriber",
    "Watch",
    "WorkspaceError",
    "WorkspaceRecord",
    "__version__",
    "follow",
    "load_settings",
]
