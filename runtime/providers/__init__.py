"""Provider adapters: blocking, thread-safe bridges to isolation backends.

``base`` is the contract; ``docker`` the ``gvisor`` provider, ``e2b`` the ``e2b`` one
(room beside them for ``firecracker`` and ``kubernetes``); ``cgroups`` and ``diskusage`` measure
workspaces that run as processes and directories on this host.
"""

from runtime.providers.base import Commands, EventWatch, ProcessSink, Provider

__all__ = ["Commands", "EventWatch", "ProcessSink", "Provider"]
