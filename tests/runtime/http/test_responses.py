"""Statuses, error bodies and what the routes read of a request."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import msgspec
import pytest

from runtime import errors
from runtime.errors import WorkspaceError
from runtime.http import responses
from runtime.http.responses import RETRY_AFTER_S, STATUS, Asked, Response, error, malformed, read_body, refused
from runtime.messages import ErrorBody


def every_error_class() -> list[type[WorkspaceError]]:
    found: list[type[WorkspaceError]] = []
    waiting: list[type[WorkspaceError]] = [WorkspaceError]
    while waiting:
        cls = waiting.pop()
        found.append(cls)
        waiting += cls.__subclasses__()
    return found


def header(response: Response, name: str) -> str | None:
    return next((value for key, value in response.headers if key.lower() == name), None)


def scope(headers: dict[str, str] | None = None, query: bytes = b"", method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": "/api/v1/agent/workspaces",
        "query_string": query,
        "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()],
    }


def test_the_error_classes_are_all_found_in_the_errors_module() -> None:
    named = {getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    assert named == set(every_error_class())


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_every_wire_error_code_has_an_http_status(cls: type[WorkspaceError]) -> None:
    assert cls.code in STATUS
    assert error(cls.code, "x", cls.default_retryable).status == STATUS[cls.code]


def test_an_unknown_code_is_an_internal_error() -> None:
    assert error("exploded", "what").status == 500


def test_a_value_the_runtime_refused_is_422() -> None:
    assert error("bad_request", "invalid args for create: cpu=-1 is out of range").status == 422
    assert error("bad_request", "path '../etc' is outside /workspace").status == 422


def test_a_request_the_http_side_cannot_read_is_400_with_the_bad_request_code() -> None:
    response = malformed("the body is not JSON: malformed")
    assert response.status == 400
    assert header(response, "retry-after") is None
    assert msgspec.json.decode(response.body) == {
        "error": {"code": "bad_request", "message": "the body is not JSON: malformed", "retryable": False}
    }


def test_a_request_the_http_side_cannot_read_may_carry_its_own_status() -> None:
    assert malformed("too large", 413).status == 413


def test_unauthorized_asks_for_a_bearer_token() -> None:
    response = error("unauthorized", "missing or wrong token")
    assert response.status == 401
    challenge = header(response, "www-authenticate")
    assert challenge is not None
    assert challenge.startswith("Bearer ")


@pytest.mark.parametrize(("code", "status"), [("capacity", 429), ("provider_unavailable", 503), ("disabled", 503)])
def test_a_retryable_429_or_503_says_when_to_retry_and_a_final_one_does_not(code: str, status: int) -> None:
    retry = error(code, "later", retryable=True)
    final = error(code, "never", retryable=False)
    assert (retry.status, final.status) == (status, status)
    assert header(retry, "retry-after") == str(RETRY_AFTER_S)
    assert header(final, "retry-after") is None


@pytest.mark.parametrize("code", ["timeout", "internal", "conflict", "not_found", "bad_request"])
def test_no_other_status_says_when_to_retry(code: str) -> None:
    assert header(error(code, "x", retryable=True), "retry-after") is None


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda cls: cls.__name__)
def test_the_error_body_is_the_wire_error_unchanged(cls: type[WorkspaceError]) -> None:
    response = error(cls.code, "what happened", cls.default_retryable)
    assert response.content_type == "application/json"
    assert msgspec.json.decode(response.body) == {
        "error": {"code": cls.code, "message": "what happened", "retryable": cls.default_retryable}
    }


def test_an_error_reply_keeps_its_code_message_and_retry_hint() -> None:
    response = refused(ErrorBody("capacity", "full", True))
    assert response.status == 429
    assert msgspec.json.decode(response.body) == {"error": {"code": "capacity", "message": "full", "retryable": True}}


def test_a_missing_error_body_is_an_internal_error() -> None:
    response = refused(None)
    assert response.status == 500
    assert msgspec.json.decode(response.body)["error"]["code"] == "internal"


@pytest.mark.parametrize("authorization", ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret ", "bEaReR\ts3cret"])
def test_the_bearer_token_is_read_whatever_the_case_of_its_scheme(authorization: str) -> None:
    assert Asked.of(scope({"Authorization": authorization})).token == "s3cret"


def test_the_authorization_header_name_is_read_whatever_its_case() -> None:
    assert Asked.of(scope({"AUTHORIZATION": "Bearer s3cret"})).token == "s3cret"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer a b"}],
    ids=["none", "basic", "no-token", "two-words"],
)
def test_anything_but_one_bearer_token_is_no_token(headers: dict[str, str]) -> None:
    assert Asked.of(scope(headers)).token == ""


def test_the_idempotency_key_is_the_request_id_and_an_empty_one_is_none() -> None:
    assert Asked.of(scope({"Idempotency-Key": "create-42"})).key == "create-42"
    assert Asked.of(scope({"Idempotency-Key": ""})).key is None
    assert Asked.of(scope()).key is None


def test_the_query_keeps_repeated_and_blank_values() -> None:
    asked = Asked.of(scope(query=b"label=team%3Da&label=env%3Dprod&state="))
    assert asked.query == {"label": ["team=a", "env=prod"], "state": [""]}
    assert (asked.method, asked.path) == ("GET", "/api/v1/agent/workspaces")


@pytest.mark.parametrize(("value", "seq"), [("0", 0), ("42", 42), (" 17 ", 17)])
def test_last_event_id_reads_a_number(value: str, seq: int) -> None:
    assert Asked.of(scope({"Last-Event-ID": value})).last_event_id() == seq


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "12abc", "0x10", "²", "¹²"])
def test_last_event_id_ignores_junk(value: str) -> None:
    assert Asked.of(scope({"Last-Event-ID": value})).last_event_id() is None


def test_no_last_event_id_is_none() -> None:
    assert Asked.of(scope()).last_event_id() is None


def test_a_response_is_sent_with_its_type_length_and_headers() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(Response(418, b"teapot", "text/plain", [("x-kind", "tea")]).send(send))
    assert sent == [
        {
            "type": "http.response.start",
            "status": 418,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6"), (b"x-kind", b"tea")],
        },
        {"type": "http.response.body", "body": b"teapot"},
    ]


def body_of(chunks: list[bytes]) -> bytes | None:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)

    return asyncio.run(read_body(receive))


def test_a_body_in_chunks_is_read_whole() -> None:
    assert body_of([b"ab", b"", b"cd", b"e"]) == b"abcde"


def test_a_body_larger_than_the_limit_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(responses, "MAX_BODY", 4)
    assert body_of([b"abcd"]) == b"abcd"
    assert body_of([b"abc", b"de"]) is None
