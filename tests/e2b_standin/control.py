"""A local stand-in of E2B's REST control plane, served to the real ``e2b`` SDK.

E2B's cloud is out of reach from the tests, so ``ControlPlane`` plays the part of its API
(``api_url``): the endpoints the SDK calls for create, list, info, timeout, pause, connect
and kill, with E2B's status codes, headers and bodies built from the SDK's own models, an
``X-API-KEY`` check, sandbox timeouts enforced like E2B's (kill, or pause with
``auto_pause``) and faults to inject (statuses, an API answering 503, an API not listening).
Each sandbox is a real Docker container (``tests.e2b_standin.containers``), so commands and
files work in it through ``tests.e2b_standin.sandbox.attach``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

from e2b.api.client.models import Error, SandboxState
from e2b.connection_config import ApiParams

from tests.e2b_standin.containers import default_image, docker_client, remove_all_standin_containers
from tests.e2b_standin.endpoints import Endpoints, Reply, error_reply

__all__ = ["DEFAULT_API_KEY", "ENVD_VERSION", "ControlPlane", "RecordedRequest"]

DEFAULT_API_KEY = "e2b_standin_0123456789abcdef"
ENVD_VERSION = "0.5.7"
"""The envd version sandboxes report: new enough for every version check of the features the
stand-in serves (stdin 0.3.0, default user 0.4.0, closing stdin 0.5.2), older than file
metadata (0.6.2), which the stand-in does not keep (the SDK itself then refuses it)."""


class RecordedRequest(NamedTuple):
    """One request the plane received: the JSON body of a POST, the query of a GET, else ``None``."""

    method: str
    path: str
    body: Any


@dataclass
class _Fault:
    status: int
    remaining: int
    path_prefix: str | None
    method: str | None
    message: str
    headers: dict[str, str]

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


class ControlPlane(Endpoints):
    """E2B's REST API on ``127.0.0.1``, its sandboxes in Docker; ``start()``/``close()`` or ``with``.

    Args:
        api_key: the only key accepted in ``X-API-KEY`` (others get 401).
        templates: template names that exist (a create from any other is a 404).
        image: the image every template runs (default: the project's base workspace image).
        domain: the sandbox domain answered to creates and connects.
        envd_version: the envd version sandboxes report.
        default_timeout_s: a sandbox's lifetime when the create does not say (E2B's is 15 s).
        max_timeout_s: the longest timeout accepted (E2B's Pro tier: 24 h).
        default_page_size, max_page_size: the list's page size when none is asked, and its cap.
        client: the Docker API client (default: one from the environment).

    ``plane_id`` labels this plane's containers; ``requests`` logs every request received.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        templates: Iterable[str] = ("base",),
        image: str | None = None,
        domain: str = "standin.local",
        envd_version: str = ENVD_VERSION,
        default_timeout_s: int = 15,
        max_timeout_s: int = 24 * 3600,
        default_page_size: int = 100,
        max_page_size: int = 100,
        client: Any = None,
    ) -> None:
        super().__init__(
            plane_id="plane" + secrets.token_hex(6),
            client=client or docker_client(),
            image=image or default_image(),
            templates=frozenset(templates),
            domain=domain,
            envd_version=envd_version,
            default_timeout_s=default_timeout_s,
            max_timeout_s=max_timeout_s,
            default_page_size=default_page_size,
            max_page_size=max_page_size,
        )
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._available = True
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._port = 0
        self._expiry: threading.Thread | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The ``api_url`` to give the SDK."""
        return f"http://127.0.0.1:{self._port}"

    def api_params(self) -> ApiParams:
        """The SDK options that reach this plane: ``Sandbox.create(..., **plane.api_params())``."""
        return ApiParams(api_key=self.api_key, api_url=self.url, domain=self.domain)

    def start(self) -> Self:
        self._listen()
        self._expiry = threading.Thread(target=self._expire_loop, name="e2b-standin-expiry", daemon=True)
        self._expiry.start()
        return self

    def close(self) -> None:
        """Stop serving, stop enforcing timeouts and remove every container of this plane."""
        self._stop_listening()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._expiry is not None:
            self._expiry.join(timeout=30)
        remove_all_standin_containers(self.plane_id, self.client)
        with self._cond:
            self._sandboxes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _listen(self) -> None:
        plane = self
        handler = type("StandInHandler", (_Handler,), {"plane": plane})
        server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        # Kept-alive connections would go on being served: cut them, as a dead API host would.
        with self._cond:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        status: int,
        times: int = 1,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests (under ``path_prefix``, with ``method``, if given) with ``status``.

        The body is the SDK's ``Error`` model. Mind that the SDK retries 429, 502, 503 and
        504 by itself (3 times by default, unless ``Should-Retry: false`` is in ``headers``):
        to see its exception, fail more times than it retries. And that listing and creating
        share ``/v2/sandboxes``: ``method="POST"`` fails creates only.
        """
        fault = _Fault(status, times, path_prefix, method, message or f"injected failure {status}", dict(headers or {}))
        with self._cond:
            self._faults.append(fault)

    def set_available(self, available: bool) -> None:
        """While not available, every request gets a 503 (E2B busy), which the SDK retries, then raises."""
        self._available = available

    def set_reachable(self, reachable: bool) -> None:
        """Stop listening (connections refused) or listen again on the same port; sandboxes live on."""
        if reachable and self._server is None:
            self._listen()
        elif not reachable:
            self._stop_listening()

    # ------------------------------------------------------------------ for tests

    def sandbox_state(self, sandbox_id: str) -> str | None:
        """``"running"``, ``"paused"``, or ``None`` for a sandbox the plane does not know (or killed)."""
        with self._cond:
            record = self._sandboxes.get(sandbox_id)
            return None if record is None else record.state.value

    # ------------------------------------------------------------------ requests

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                self.requests.append(RecordedRequest(method, parts.path, raw))
                return error_reply(400, f"Error when parsing request: {exc}")
        self.requests.append(RecordedRequest(method, parts.path, query if method == "GET" else body))
        if not self._available:
            return error_reply(503, "Service temporarily unavailable")
        fault = self._take_fault(method, parts.path)
        if fault is not None:
            return Reply(fault.status, Error(code=fault.status, message=fault.message).to_dict(), fault.headers)
        if headers.get("X-API-KEY") != self.api_key:
            return error_reply(401, "Invalid API key")
        return self.route(method, parts.path, query, body, headers)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ timeouts

    def _expire_loop(self) -> None:
        """Kill (or pause, with auto-pause) each running sandbox when its end time passes."""
        while True:
            with self._cond:
                if self._stopping:
                    return
                current = self.clock()
                due = [r for r in self._sandboxes.values() if r.state == SandboxState.RUNNING and r.end_at <= current]
                for record in due:
                    if record.auto_pause:
                        record.state, record.end_at = SandboxState.PAUSED, current
                    else:
                        del self._sandboxes[record.sandbox_id]
                if not due:
                    ends = [r.end_at for r in self._sandboxes.values() if r.state == SandboxState.RUNNING]
                    wait = None if not ends else max(0.0, (min(ends) - current) / timedelta(seconds=1))
                    self._cond.wait(wait)
                    continue
            for record in due:
                if record.auto_pause:
                    self.pause_container(record)
                else:
                    self.remove_container(record)


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the plane; answers JSON with a length (keep-alive, as E2B's API)."""

    plane: ControlPlane
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.plane._cond:
            self.plane._connections.add(self.connection)

    def finish(self) -> None:
        with self.plane._cond:
            self.plane._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            reply = self.plane._dispatch(self.command, self.path, self.headers, raw)  # type: ignore[arg-type]
        except Exception as exc:  # a bug in the stand-in must reach the test as a 500, not a hang
            reply = error_reply(500, f"stand-in error: {exc!r}")
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log (``ControlPlane.requests``) says what came, without noise on stderr
