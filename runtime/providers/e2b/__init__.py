"""The ``e2b`` provider: sandboxes in E2B's cloud through the ``e2b`` SDK.

``provider`` is the lifecycle (create, kill, inventory by metadata, timeouts kept in step
with expiry, health), ``commands`` what runs inside (commands, streamed processes,
files), ``api`` the one class over the SDK's control-plane calls, ``errors`` the
translation of the SDK's exceptions.
"""

from runtime.providers.e2b.api import E2BApi, E2BParams
from runtime.providers.e2b.errors import REJECTED_KEY
from runtime.providers.e2b.provider import E2BProvider, e2b_in_use, e2b_provider

__all__ = ["REJECTED_KEY", "E2BApi", "E2BParams", "E2BProvider", "e2b_in_use", "e2b_provider"]
