"""One server, many callers: ids rewritten each way, the handshake once, the server's own requests answered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.errors import BadRequest
from runtime.mcp.jsonrpc import PROTOCOL_VERSION, Answer, Forward, Lines, Mux, Notify, Reply
from runtime.messages import ReplyTo

ALICE = ReplyTo(b"alice", "r1")
BOB = ReplyTo(b"bob", "r9")
INIT_RESULT = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "serverInfo": {"name": "s"}}


def sent(action: Answer | Forward) -> dict[str, Any]:
    assert isinstance(action, Forward)
    assert action.line.endswith(b"\n") and action.line.count(b"\n") == 1
    message: dict[str, Any] = json.loads(action.line)
    return message


def initialized_mux() -> Mux:
    mux = Mux()
    handshake = json.loads(mux.handshake())
    assert handshake["method"] == "initialize"
    assert handshake["params"]["protocolVersion"] == PROTOCOL_VERSION
    assert mux.incoming({"jsonrpc": "2.0", "id": handshake["id"], "result": INIT_RESULT}) is None
    assert mux.initialize_result == INIT_RESULT
    return mux


def call(ident: Any, method: str = "tools/call") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "method": method, "params": {"name": "add"}}


def test_two_callers_using_the_same_id_each_get_their_own_response() -> None:
    mux = initialized_mux()
    to_server_a = sent(mux.request(ALICE, call(1)))
    to_server_b = sent(mux.request(BOB, call(1)))
    assert to_server_a["id"] != to_server_b["id"]
    assert mux.in_flight == 2
    reply_b = mux.incoming({"jsonrpc": "2.0", "id": to_server_b["id"], "result": {"n": "b"}})
    reply_a = mux.incoming({"jsonrpc": "2.0", "id": to_server_a["id"], "result": {"n": "a"}})
    assert reply_a == Reply(ALICE, {"jsonrpc": "2.0", "id": 1, "result": {"n": "a"}})
    assert reply_b == Reply(BOB, {"jsonrpc": "2.0", "id": 1, "result": {"n": "b"}})
    assert mux.in_flight == 0


def test_a_string_id_comes_back_as_given_and_params_pass_untouched() -> None:
    mux = initialized_mux()
    message = {"jsonrpc": "2.0", "id": "x-7", "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
    forwarded = sent(mux.request(ALICE, message))
    assert {**forwarded, "id": "x-7"} == message
    reply = mux.incoming({"jsonrpc": "2.0", "id": forwarded["id"], "error": {"code": -1, "message": "no"}})
    assert reply == Reply(ALICE, {"jsonrpc": "2.0", "id": "x-7", "error": {"code": -1, "message": "no"}})


def test_initialize_is_answered_from_the_handshake_with_the_callers_id() -> None:
    mux = initialized_mux()
    answer = mux.request(ALICE, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
    assert answer == Answer({"jsonrpc": "2.0", "id": 0, "result": INIT_RESULT})
    assert mux.request(ALICE, {"jsonrpc": "2.0", "method": "notifications/initialized"}) == Answer({})
    assert mux.in_flight == 0


def test_a_refused_handshake_is_kept_as_the_error() -> None:
    mux = Mux()
    handshake = json.loads(mux.handshake())
    mux.incoming({"jsonrpc": "2.0", "id": handshake["id"], "error": {"code": -32602, "message": "bad version"}})
    assert mux.initialize_result is None
    assert mux.initialize_error == {"code": -32602, "message": "bad version"}


def test_other_notifications_are_forwarded_as_they_are() -> None:
    mux = initialized_mux()
    message = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    assert sent(mux.request(ALICE, message)) == message


def test_a_cancellation_reaches_the_callers_own_request_only() -> None:
    mux = initialized_mux()
    alice = sent(mux.request(ALICE, call(5)))
    sent(mux.request(BOB, call(5)))
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "stop"}}
    forwarded = sent(mux.request(ReplyTo(b"alice", "r2"), cancel))
    assert forwarded["params"] == {"requestId": alice["id"], "reason": "stop"}
    assert mux.request(ReplyTo(b"carol", "r1"), cancel) == Answer({})  # carol has no request 5


def test_the_servers_ping_is_answered_and_its_other_requests_refused() -> None:
    mux = initialized_mux()
    pong = mux.incoming({"jsonrpc": "2.0", "id": "s1", "method": "ping"})
    assert isinstance(pong, Forward)
    assert json.loads(pong.line) == {"jsonrpc": "2.0", "id": "s1", "result": {}}
    refused = mux.incoming({"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage", "params": {}})
    assert isinstance(refused, Forward)
    assert json.loads(refused.line)["error"]["code"] == -32601


def test_a_servers_notification_is_to_be_published() -> None:
    mux = initialized_mux()
    message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    assert mux.incoming(message) == Notify(message)


def test_answers_to_nothing_in_flight_are_dropped() -> None:
    mux = initialized_mux()
    assert mux.incoming({"jsonrpc": "2.0", "id": 999, "result": {}}) is None
    assert mux.incoming(["not", "a", "map"]) is None


def test_requests_in_flight_are_handed_back_when_the_process_ends_or_they_expire() -> None:
    mux = initialized_mux()
    sent(mux.request(ALICE, call(1)))
    assert mux.expired(3600) == []
    assert mux.expired(-1) == [ALICE]
    sent(mux.request(BOB, call(1)))
    assert mux.abandon() == [BOB]
    assert mux.in_flight == 0


@pytest.mark.parametrize(
    "message",
    [
        {"id": 1, "method": "tools/list"},
        {"jsonrpc": "1.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "method": ""},
        {"jsonrpc": "2.0", "id": None, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": True, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": [1], "method": "tools/list"},
    ],
)
def test_a_message_that_is_not_a_json_rpc_request_is_refused(message: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        initialized_mux().request(ALICE, message)


def test_initialize_before_the_handshake_is_refused() -> None:
    with pytest.raises(BadRequest, match="not been initialized"):
        Mux().request(ALICE, {"jsonrpc": "2.0", "id": 1, "method": "initialize"})


def test_lines_are_whole_whatever_the_chunks() -> None:
    lines = Lines()
    assert lines.feed(b'{"a":') == []
    assert lines.feed(b'1}\n{"b":2}\r\n\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert lines.feed(b":3}\n") == [b'{"c":3}']
    lines.feed(b"partial")
    lines.reset()
    assert lines.feed(b"{}\n") == [b"{}"]
