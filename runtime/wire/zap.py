"""The ZAP handler: who may complete a ZeroMQ handshake with the runtime's sockets.

libzmq asks the ZAP handler of a socket's context (a REP socket on
``inproc://zeromq.zap.01``, served by the Gateway thread) about every connection to a
socket with a security mechanism (RFC 27). The answers:

- ``PLAIN`` (the event stream without CURVE): the username ``workspaces`` and the runtime's
  token as password, compared in constant time.
- ``CURVE`` (both sockets, with ``WORKSPACE_ZMQ_CURVE``): the client's public key is one of
  ``STATE_DIR/curve/clients/*.key``, read at each handshake so that ``workspaces keys``
  takes effect for new connections without a restart.
- anything else: refused.

``inproc://`` connections never reach it: libzmq runs no security mechanism on them (the
embedded host and the HTTP layer are in the runtime's own process).

A refused peer is logged (its address, the mechanism, the reason; never a credential),
once per address and mechanism per minute: a client with a wrong token reconnects every
few hundred milliseconds.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Collection
from typing import Final

import zmq
from zmq.utils import z85

__all__ = ["EVENTS_DOMAIN", "PLAIN_USERNAME", "REQUESTS_DOMAIN", "ZAP_ENDPOINT", "Doorkeeper"]

log = logging.getLogger(__name__)

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
PLAIN_USERNAME: Final = "workspaces"
EVENTS_DOMAIN: Final = "workspaces-events"
REQUESTS_DOMAIN: Final = "workspaces-requests"
_WHAT = {EVENTS_DOMAIN.encode(): "subscriber", REQUESTS_DOMAIN.encode(): "client"}
_LOG_EVERY_S = 60.0


class Doorkeeper:
    """Answers ZAP requests.

    Args:
        token: The runtime's shared secret (the PLAIN password).
        allowed_keys: Returns the admitted client public keys (Z85); ``None``: CURVE is off
            and every CURVE handshake is refused.
        clock: For the refusal log's rate limit.
    """

    def __init__(
        self,
        token: str,
        allowed_keys: Callable[[], Collection[bytes]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token.encode()
        self._allowed_keys = allowed_keys
        self._clock = clock
        self._last_logged: dict[tuple[bytes, bytes], tuple[float, int]] = {}
        self.admitted = 0
        self.refused = 0

    def serve(self, socket: zmq.Socket[bytes]) -> None:
        """Answer every request waiting on the ZAP socket (never blocks)."""
        while int(socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            socket.send_multipart(self.answer(socket.recv_multipart()))

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request: ``[version, request id, status, text, user id, metadata]``."""
        if len(frames) < 6 or frames[0] != b"1.0":
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
        _, request_id, domain, address, _, mechanism, *credentials = frames
        reason = self._refusal(mechanism, credentials)
        if reason is None:
            self.admitted += 1
            return [b"1.0", request_id, b"200", b"OK", mechanism.lower(), b""]
        self.refused += 1
        self._log_refusal(domain, address, mechanism, reason)
        return [b"1.0", request_id, b"400", reason.encode(), b"", b""]

    def _refusal(self, mechanism: bytes, credentials: list[bytes]) -> str | None:
        if mechanism == b"PLAIN" and len(credentials) == 2:
            username, password = credentials
            # Both compared whole, so the time taken says nothing about which was wrong.
            user_ok = hmac.compare_digest(username, PLAIN_USERNAME.encode())
            if hmac.compare_digest(password, self._token) & user_ok:
                return None
            return "wrong username or token"
        if mechanism == b"CURVE" and len(credentials) == 1:
            if self._allowed_keys is None:
                return "CURVE is off"
            key = z85.encode(credentials[0])
            listed = False
            for allowed in self._allowed_keys():
                listed |= hmac.compare_digest(key, allowed)
            if listed:
                return None
            return f"client key {key.decode()} is not listed under STATE_DIR/curve/clients"
        return f"mechanism {mechanism.decode(errors='replace')} is not accepted"

    def _log_refusal(self, domain: bytes, address: bytes, mechanism: bytes, reason: str) -> None:
        now = self._clock()
        key = (address, mechanism)
        since, count = self._last_logged.get(key, (-_LOG_EVERY_S, 0))
        what = _WHAT.get(domain, "peer")
        peer = address.decode(errors="replace")
        if now - since < _LOG_EVERY_S:
            self._last_logged[key] = (since, count + 1)
            log.debug("refused a %s from %s (%s): %s", what, peer, mechanism.decode(errors="replace"), reason)
            return
        if len(self._last_logged) > 10_000:  # many addresses: forget them rather than grow
            self._last_logged.clear()
        self._last_logged[key] = (now, 0)
        more = f" ({count} more refusals from there since the last report)" if count else ""
        log.warning("refused a %s from %s (%s): %s%s", what, peer, mechanism.decode(errors="replace"), reason, more)
