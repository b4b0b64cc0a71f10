"""The ASGI plumbing every route shares: the request as read, responses, error statuses.

Wire error codes become statuses: not_found 404, conflict 409, capacity 429 (with
``Retry-After``), provider_unavailable and disabled 503 (``Retry-After`` when retryable),
unauthorized 401 (with ``WWW-Authenticate: Bearer``), bad_request 422 (the request was
read, and the runtime refused a value: a rule, a path outside ``/workspace``), timeout
504, internal 500. A request the HTTP side cannot read (a body that is not a JSON object,
too large) answers 400 (``malformed``), code ``bad_request``. The JSON body is
``{"error": {"code", "message", "retryable"}}``: the wire protocol's error, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import msgspec

from runtime.messages import ErrorBody

__all__ = [
    "JSON",
    "MAX_BODY",
    "RETRY_AFTER_S",
    "STATUS",
    "Asked",
    "Receive",
    "Response",
    "Scope",
    "Send",
    "error",
    "json",
    "malformed",
    "read_body",
    "refused",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

STATUS = {
    "bad_request": 422,
    "unauthorized": 401,
    "not_found": 404,
    "conflict": 409,
    "capacity": 429,
    "provider_unavailable": 503,
    "disabled": 503,
    "timeout": 504,
    "internal": 500,
}
"""The HTTP status of each wire error code."""
RETRY_AFTER_S = 5
"""``Retry-After`` of a retryable 429 or 503."""
JSON = "application/json"
MAX_BODY = 96 << 20
"""The largest request body read (a file write's bytes travel whole in one request)."""
_BEARER = re.compile(r"bearer\s+(\S+)\s*", re.IGNORECASE)
_DIGITS = re.compile("[0-9]+")


@dataclass(frozen=True)
class Asked:
    """What of an HTTP request the routes read.

    Attributes:
        token: The bearer token of ``Authorization`` (empty if none).
        key: ``Idempotency-Key``, the wire request id (``None``: a fresh one).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    token: str
    key: str | None

    @classmethod
    def of(cls, scope: Scope) -> Asked:
        """Read an ASGI ``http`` scope."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        bearer = _BEARER.fullmatch(headers.get("authorization", ""))
        return cls(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True),
            headers=headers,
            token=bearer.group(1) if bearer else "",
            key=headers.get("idempotency-key") or None,
        )

    def last_event_id(self) -> int | None:
        """``Last-Event-ID`` as a number, if given."""
        last = self.headers.get("last-event-id", "").strip()
        return int(last) if _DIGITS.fullmatch(last) else None


class Response:
    """A whole response (event streams are sent as they go instead); no ``content_type``: no such header."""

    def __init__(
        self, status: int, body: bytes, content_type: str | None = JSON, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []

    async def send(self, send: Send) -> None:
        """Send it over ASGI."""
        headers = [] if self.content_type is None else [(b"content-type", self.content_type.encode())]
        headers.append((b"content-length", str(len(self.body)).encode()))
        headers += [(name.encode(), value.encode()) for name, value in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """``value`` as a JSON response."""
    return Response(status, msgspec.json.encode(value), JSON, headers)


def error(code: str, message: str, retryable: bool = False) -> Response:
    """The response of a wire error."""
    status = STATUS.get(code, 500)
    headers = []
    if code == "unauthorized":
        headers.append(("www-authenticate", 'Bearer realm="agent-workspaces"'))
    if status in (429, 503) and retryable:
        headers.append(("retry-after", str(RETRY_AFTER_S)))
    return json(status, {"error": ErrorBody(code, message, retryable)}, headers)


def malformed(message: str, status: int = 400) -> Response:
    """The response to a request the HTTP side cannot read (``bad_request``)."""
    return json(status, {"error": ErrorBody("bad_request", message, False)})


def refused(body: ErrorBody | None) -> Response:
    """The response of an error reply."""
    body = body or ErrorBody("internal", "malformed error reply", False)
    return error(body.code, body.message, body.retryable)


async def read_body(receive: Receive) -> bytes | None:
    """The request's body, or ``None`` when it is larger than ``MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
