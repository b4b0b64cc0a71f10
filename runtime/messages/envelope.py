"""The envelopes of wire protocol v1: a request, its reply, and the event socket's welcome."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from runtime.messages.limits import MAX_OP_CHARS, MAX_REQUEST_ID_CHARS

__all__ = ["WELCOME", "ErrorBody", "ErrorReply", "OkReply", "Reply", "Request"]

WELCOME: Final = b"\x00welcome"
"""The one-frame message the event socket sends each new subscriber (events have two frames)."""


class Request(msgspec.Struct, frozen=True):
    """A request envelope; ``args`` is decoded per op once the op is known.

    ``id`` and ``op`` are bounded as the envelope is decoded: the id is kept with the
    request (for retries) and both are quoted back, so neither may be large.
    """

    id: Annotated[str, msgspec.Meta(max_length=MAX_REQUEST_ID_CHARS)]
    op: Annotated[str, msgspec.Meta(max_length=MAX_OP_CHARS)]
    token: str = ""
    args: msgspec.Raw = msgspec.Raw(b"\x80")


class ErrorBody(msgspec.Struct, frozen=True):
    """The ``error`` map of a failed reply."""

    code: str
    message: str
    retryable: bool


class OkReply(msgspec.Struct, frozen=True):
    """A successful reply, as the server sends it."""

    id: str
    result: Any
    ok: bool = True


class ErrorReply(msgspec.Struct, frozen=True):
    """A failed reply, as the server sends it."""

    id: str
    error: ErrorBody
    ok: bool = False


class Reply(msgspec.Struct, frozen=True):
    """Either reply, as a client reads it: ``result`` stays raw until the op's type is known."""

    id: str
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"\xc0")
    error: ErrorBody | None = None
