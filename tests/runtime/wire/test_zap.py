"""The Doorkeeper's answers to ZAP requests, and what it logs about the peers it refuses."""

from __future__ import annotations

import logging

import pytest
import zmq
from zmq.utils import z85

from runtime.wire.zap import EVENTS_DOMAIN, REQUESTS_DOMAIN, Doorkeeper

TOKEN = "the-token-" + "z" * 22


def request(
    mechanism: bytes, *credentials: bytes, domain: str = EVENTS_DOMAIN, address: bytes = b"10.1.2.3"
) -> list[bytes]:
    return [b"1.0", b"req-1", domain.encode(), address, b"", mechanism, *credentials]


def status(reply: list[bytes]) -> bytes:
    assert reply[:2] == [b"1.0", b"req-1"]
    return reply[2]


def test_plain_with_the_username_and_the_token_is_admitted() -> None:
    keeper = Doorkeeper(TOKEN)
    assert status(keeper.answer(request(b"PLAIN", b"workspaces", TOKEN.encode()))) == b"200"
    assert (keeper.admitted, keeper.refused) == (1, 0)


@pytest.mark.parametrize(
    "credentials",
    [
        (b"workspaces", b"not-the-token-at-all"),
        (b"workspaces", TOKEN.encode()[:-1]),
        (b"workspaces", b""),
        (b"admin", TOKEN.encode()),
        (b"workspaces",),
    ],
)
def test_plain_with_a_wrong_token_or_username_is_refused(credentials: tuple[bytes, ...]) -> None:
    keeper = Doorkeeper(TOKEN)
    assert status(keeper.answer(request(b"PLAIN", *credentials))) == b"400"
    assert keeper.refused == 1


def test_curve_admits_only_listed_client_keys_as_they_are_listed_at_the_handshake() -> None:
    listed: set[bytes] = set()
    keeper = Doorkeeper(TOKEN, lambda: listed)
    public, _ = zmq.curve_keypair()
    raw = z85.decode(public)
    assert status(keeper.answer(request(b"CURVE", raw, domain=REQUESTS_DOMAIN))) == b"400"
    listed.add(public)
    assert status(keeper.answer(request(b"CURVE", raw, domain=REQUESTS_DOMAIN))) == b"200"
    listed.clear()  # `workspaces keys remove`: the next handshake is refused
    assert status(keeper.answer(request(b"CURVE", raw, domain=REQUESTS_DOMAIN))) == b"400"


def test_curve_is_refused_when_it_is_off_and_so_is_null_or_an_unknown_mechanism() -> None:
    keeper = Doorkeeper(TOKEN)
    public, _ = zmq.curve_keypair()
    assert status(keeper.answer(request(b"CURVE", z85.decode(public)))) == b"400"
    assert status(keeper.answer(request(b"NULL"))) == b"400"
    assert status(keeper.answer(request(b"GSSAPI", b"x"))) == b"400"


def test_a_malformed_request_gets_an_internal_error_status() -> None:
    keeper = Doorkeeper(TOKEN)
    assert keeper.answer([b"2.0", b"req-1", b"", b"", b"", b"PLAIN"])[2] == b"500"
    assert keeper.answer([b"1.0"])[2] == b"500"


def test_a_refusal_is_logged_once_a_minute_per_peer_without_the_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    keeper = Doorkeeper(TOKEN, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="runtime.wire.zap")
    wrong = b"wrong-" + TOKEN.encode()  # contains the token: it must not be logged either
    for _ in range(5):  # a wrong client reconnects again and again
        keeper.answer(request(b"PLAIN", b"workspaces", wrong))
    now[0] += 61
    keeper.answer(request(b"PLAIN", b"workspaces", wrong))
    keeper.answer(request(b"PLAIN", b"workspaces", wrong, address=b"10.9.9.9"))
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        "refused a subscriber from 10.1.2.3 (PLAIN): wrong username or token",
        "refused a subscriber from 10.1.2.3 (PLAIN): wrong username or token "
        "(4 more refusals from there since the last report)",
        "refused a subscriber from 10.9.9.9 (PLAIN): wrong username or token",
    ]
    assert TOKEN not in caplog.text
    assert keeper.refused == 7
