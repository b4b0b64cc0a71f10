"""Provider adapters: blocking, thread-safe bridges to isolation backends.

``base`` is the contract; ``docker`` the ``gvisor`` provider (room beside it for
``firecracker``, ``e2b`` and ``kubernetes``); ``cgroups`` and ``diskusage`` measure
workspaces that run as processes and directories on this host.
"""

from runtime.providers.base import Commands, EventWatch, ProcessSink, Provider

__all__ = ["Commands", "EventWatch", "ProcessSink", "Provider"]
