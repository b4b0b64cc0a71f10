"""The HTTP API served from the runtime's own process: uvicorn on one thread.

The listening socket is bound before the thread starts, so a taken address fails
``Runtime.start`` at once (``ConfigError``) and ``host:0`` gets a real port. uvicorn
neither configures logging nor logs requests (the bearer token is in every request's
headers, and nothing of a request is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

import uvicorn

from runtime.errors import ConfigError
from runtime.http.app import HttpApp

__all__ = ["HttpServer"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class HttpServer:
    """``app`` served on ``address`` (``host:port``) by uvicorn in a thread of its own.

    Raises:
        ConfigError: ``address`` cannot be listened on.
    """

    def __init__(self, app: HttpApp, address: str) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it every response (headers, then body) waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, int(port)))
            self._socket.listen(2048)
        except OSError as exc:
            self._socket.close()
            raise ConfigError(f"WORKSPACE_HTTP_ADDR={address!r} cannot be listened on: {exc.strerror}") from None
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.address = f"[{bound_host}]:{bound_port}" if family == socket.AF_INET6 else f"{bound_host}:{bound_port}"
        """``host:port`` as bound (a ``0`` port resolved)."""
        self._app = app
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http-api", daemon=True)

    def start(self) -> HttpServer:
        """Serve; return once uvicorn accepts connections."""
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started and self._thread.is_alive() and waited < _START_TIMEOUT_S:
            deadline.wait(0.01)
            waited += 0.01
        if not self._server.started:
            self.stop()
            raise ConfigError(f"the HTTP API on {self.address} did not start")
        log.info("HTTP API and admin page on http://%s/", self.address)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        finally:
            loop.close()

    def stop(self) -> None:
        """End the open event streams, finish the requests in flight, stop the thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop just closed
                loop.call_soon_threadsafe(self._app.end_streams)
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(_STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("the HTTP API did not stop within %.0f s", _STOP_TIMEOUT_S)
        self._socket.close()
