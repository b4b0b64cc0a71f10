"""The HTTP API and the admin page: the ops as REST, events as server-sent events.

``app(runtime)`` is the ASGI application (a host mounts it in its own ASGI server);
``HttpServer`` serves it from the runtime's process when ``WORKSPACE_HTTP_ADDR`` is set.
Every request goes through the Gateway like a ZeroMQ client's: there is no second code
path for any op. See ``docs/http.md``.
"""

from __future__ import annotations

from runtime.http.app import HttpApp, Served, app
from runtime.http.responses import STATUS
from runtime.http.server import HttpServer

__all__ = ["STATUS", "HttpApp", "HttpServer", "Served", "app"]
