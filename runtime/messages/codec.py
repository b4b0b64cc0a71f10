"""MessagePack codecs of the vocabulary, each built once at import.

Decoding raises ``msgspec.DecodeError`` (``ValidationError`` for values that break a
rule); ``invalid_args`` words such an error for the client.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from runtime.messages.args import OPS, ArgsStruct
from runtime.messages.envelope import Reply, Request
from runtime.messages.events import AnyEvent
from runtime.messages.limits import MAX_MCP_NESTING
from runtime.messages.records import StoredWorkspace
from runtime.messages.rules import broken_rule

__all__ = [
    "RuleBroken",
    "decode_args",
    "decode_as",
    "decode_event",
    "decode_json",
    "decode_reply",
    "decode_request",
    "decode_stored",
    "encode",
    "invalid_args",
    "invalid_values",
]


class RuleBroken(msgspec.ValidationError):
    """A decoded value breaks one of the vocabulary's rules; ``refusal`` says which, in words."""

    def __init__(self, refusal: str) -> None:
        super().__init__(refusal)
        self.refusal = refusal


T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_stored_decoder = msgspec.msgpack.Decoder(StoredWorkspace)
_event_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)
_args_decoders = {op: msgspec.msgpack.Decoder(cls) for op, cls in OPS.items()}
_typed_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
_WORDS_CHARS = 256
_TOO_DEEP = f"args are nested too deeply: at most {MAX_MCP_NESTING} levels of maps and arrays"
_AT_FIELD = re.compile(r" - at `(?:key` in `)?\$\.")


def encode(obj: Any) -> bytes:
    """Encode anything of this vocabulary (or plain data) as MessagePack."""
    return _encoder.encode(obj)


def decode_request(frame: bytes | memoryview) -> Request:
    """Decode a request envelope (raises ``msgspec.DecodeError`` if malformed)."""
    try:
        return _request_decoder.decode(frame)
    except RecursionError:  # even skipped values (``args``, unknown keys) are walked by recursion
        raise msgspec.DecodeError("maps or arrays are nested too deeply") from None
    except UnicodeDecodeError:  # msgspec lets it through rather than raising its own DecodeError
        raise msgspec.DecodeError("a str is not valid UTF-8") from None


def decode_json(body: bytes) -> Any:
    """Decode a JSON document (an HTTP body) into plain data (raises ``msgspec.DecodeError`` if malformed)."""
    try:
        return msgspec.json.decode(body)
    except RecursionError:
        raise msgspec.DecodeError("objects or arrays are nested too deeply") from None
    except UnicodeDecodeError:  # msgspec lets it through rather than raising its own DecodeError
        raise msgspec.DecodeError("a string is not valid UTF-8") from None


def decode_reply(frame: bytes | memoryview) -> Reply:
    """Decode a reply envelope, as a client does (raises ``msgspec.DecodeError`` if malformed)."""
    return _reply_decoder.decode(frame)


def decode_args(op: str, raw: msgspec.Raw) -> ArgsStruct:
    """Decode the ``args`` of a known op and hold them to the rules.

    Raises:
        msgspec.DecodeError: They are malformed, or break a rule (``RuleBroken``).
    """
    try:
        args = _args_decoders[op].decode(raw)
    except RecursionError:  # maps or arrays nested past the interpreter's limit (``Any`` fields)
        raise RuleBroken(_TOO_DEEP) from None
    except UnicodeDecodeError:  # msgspec lets it through rather than raising its own DecodeError
        raise msgspec.DecodeError("a str is not valid UTF-8") from None
    refusal = broken_rule(OPS[op], args)
    if refusal is not None:
        raise RuleBroken(refusal)
    return args


def decode_stored(value: bytes | memoryview) -> StoredWorkspace:
    """Decode a value of the LMDB ``workspaces`` database."""
    return _stored_decoder.decode(value)


def decode_event(value: bytes | memoryview) -> AnyEvent:
    """Decode an event from the LMDB ``events`` database or the PUB stream."""
    return _event_decoder.decode(value)


def decode_as(raw: bytes | msgspec.Raw, kind: type[T] | Any) -> T:
    """Decode ``raw`` as ``kind`` (a struct or a type such as ``list[WorkspaceRecord]``)."""
    decoder = _typed_decoders.get(kind)
    if decoder is None:
        decoder = _typed_decoders[kind] = msgspec.msgpack.Decoder(kind)
    return decoder.decode(raw)  # type: ignore[no-any-return]


def invalid_args(op: str, raw: msgspec.Raw, error: msgspec.DecodeError) -> str:
    """Why ``decode_args(op, raw)`` failed, in words a client can act on.

    A value that breaks a rule is named with the rule's refusal (``cpu=0 is out of
    range: expected 0.01 to 1024 cores``); anything else (a wrong type, an unknown or
    missing field, bytes that are not MessagePack) keeps msgspec's own message.
    """
    try:
        values = msgspec.msgpack.decode(raw) if _AT_FIELD.search(str(error)) else None
    except (msgspec.DecodeError, RecursionError):
        values = None
    return invalid_values(op, values, error)


def invalid_values(op: str, values: Any, error: msgspec.DecodeError) -> str:
    """Why ``values`` (the op's args as plain data, e.g. from JSON) are not valid for ``op``."""
    if isinstance(error, RuleBroken):
        return f"invalid args for {op}: {error.refusal}"
    if isinstance(error, msgspec.ValidationError) and _AT_FIELD.search(str(error)):
        explained = broken_rule(OPS[op], values)
        if explained is not None:
            return f"invalid args for {op}: {explained}"
    words = str(error)
    if len(words) > _WORDS_CHARS:  # msgspec quotes an unknown field's name whole
        words = f"{words[:_WORDS_CHARS]}... ({len(words)} characters)"
    return f"invalid args for {op}: {words}"
