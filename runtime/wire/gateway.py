"""The Gateway thread: the only owner of the ROUTER, PUB and inproc PULL sockets.

Requests arrive on ROUTER (one frame each after the client identity), are decoded with
prebuilt decoders, authenticated, and handed to the dispatcher. The dispatcher answers at
once (``ping``, ``get``, ``list``...) or returns ``DEFERRED`` after telling an actor, which
later answers through an ``Outbox`` into PULL; the Gateway forwards such replies to
ROUTER and events to PUB. The Gateway never blocks on an actor and never dies of client
input: anything malformed gets ``bad_request``.

Every request is registered in a ``RequestTable`` by client identity and id until its
reply leaves, so a retry is never executed twice (see ``runtime.wire.dedupe``), and so that
``stop`` can answer whatever is still in flight instead of leaving clients to time out.

Security: the Gateway also serves the context's ZAP socket (``runtime.wire.zap``), bound
before anything else, so that no handshake is ever decided without it. The PUB is a PLAIN
server (the token as password) or, with CURVE, both sockets are CURVE servers. A slow or
vanished client never holds the others up: replies are routed without blocking
(``ROUTER_MANDATORY``: one that cannot be delivered now, to a client gone or not reading,
is dropped and counted, and kept for the client's retry); a frame beyond the size limit
makes libzmq drop that one connection.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

import msgspec
import zmq

from runtime.errors import BadRequest, ConfigError, InternalError, ProviderUnavailable, Unauthorized, WorkspaceError
from runtime.messages import OPS, WELCOME, ArgsStruct, Request, decode_args, decode_request, invalid_args
from runtime.wire.dedupe import PENDING, RequestTable
from runtime.wire.outbox import ERROR, KIND_EVENT, KIND_REPLY, OK, RETRYABLE, encode_error, encode_ok, outcome
from runtime.wire.zap import EVENTS_DOMAIN, REQUESTS_DOMAIN, ZAP_ENDPOINT, Doorkeeper

__all__ = ["DEFERRED", "HWM", "MAX_REQUEST_BYTES", "Dispatch", "Gateway"]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 96 << 20
HWM: Final = 1000
"""Messages queued per client connection each way before replies to it are dropped."""
_MAX_SUBSCRIPTION_BYTES = 64 << 10
DEFERRED: Final = object()
"""Returned by the dispatcher when an actor will send the reply later."""

Dispatch = Callable[[bytes, Request, ArgsStruct], Any]
Observe = Callable[[str, float, bool], None]
"""Told each reply's op, seconds since the request arrived, and whether it succeeded."""
_BATCH = 256
_POLL_MS = 100


def _readable(sock: zmq.Socket[bytes]) -> bool:
    return bool(int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


class Gateway:
    """Binds the sockets in its own thread and serves until stopped.

    Args:
        context: The runtime's ZeroMQ context.
        token: The shared secret every request must carry.
        request_endpoints: Endpoints the ROUTER binds (tcp/ipc/inproc).
        event_endpoints: Endpoints the PUB binds.
        outbox_endpoint: The inproc endpoint of the PULL socket outboxes connect to.
        dispatch: Handles a decoded, authenticated request; returns the result or
            ``DEFERRED``; raises ``WorkspaceError`` for failures.
        observe: Told of every reply to a registered request (for metrics).
        curve_secret_key: The server's CURVE secret key (Z85): both sockets become CURVE
            servers. ``None``: requests in the clear, subscribers by PLAIN.
        client_keys: With CURVE, returns the admitted client public keys (asked at each handshake).
        max_request_bytes: The largest request decoded; a frame beyond twice this drops
            its connection.
        hwm: Messages queued per client connection each way (``SNDHWM``, ``RCVHWM``).
    """

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        *,
        token: str,
        request_endpoints: Sequence[str],
        event_endpoints: Sequence[str],
        outbox_endpoint: str,
        dispatch: Dispatch,
        observe: Observe | None = None,
        curve_secret_key: bytes | None = None,
        client_keys: Callable[[], Collection[bytes]] | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        hwm: int = HWM,
    ) -> None:
        self._context = context
        self._token = token.encode()
        self._curve_secret_key = curve_secret_key
        self._max_request_bytes = max_request_bytes
        self._hwm = hwm
        self.doorkeeper = Doorkeeper(token, (client_keys or frozenset) if curve_secret_key else None)
        self.dropped_replies = 0
        """Replies that could not be delivered when sent (client gone, or not reading)."""
        self._request_endpoints = list(request_endpoints)
        self._event_endpoints = list(event_endpoints)
        self._outbox_endpoint = outbox_endpoint
        self._dispatch = dispatch
        self._observe = observe
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None
        self._stop = threading.Event()
        self._draining = False
        self._abort_with: WorkspaceError | None = None
        self._requests = RequestTable()
        self.bound_endpoints: list[str] = []
        self.bound_event_endpoints: list[str] = []

    def start(self) -> None:
        """Bind every socket and start serving; raise if an endpoint cannot be bound."""
        self._thread.start()
        self._bound.wait()
        if self._bind_error is not None:
            self._thread.join()
            raise self._bind_error

    def drain(self) -> None:
        """Refuse new requests (retryable) while in-flight work finishes."""
        self._draining = True

    def in_flight(self) -> int:
        """How many requests wait for their reply (read from any thread; approximate)."""
        return self._requests.pending_count()

    def stop(self, abort_with: WorkspaceError | None = None) -> None:
        """Forward what is left in the outbox, close the sockets and end the thread.

        Args:
            abort_with: If set, every request still in flight is answered with this error.
        """
        self._abort_with = abort_with
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    # ------------------------------------------------------------------ thread

    def _secure(self, sock: zmq.Socket[bytes], domain: str) -> None:
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        if self._curve_secret_key is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._curve_secret_key)
        else:
            sock.setsockopt(zmq.PLAIN_SERVER, 1)

    def _bind(self, kind: int, endpoints: Sequence[str]) -> tuple[zmq.Socket[bytes], list[str]]:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if kind == zmq.XPUB:
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.setsockopt(zmq.MAXMSGSIZE, _MAX_SUBSCRIPTION_BYTES)
            # Greets each new subscriber, so it knows its subscription is live (see Subscriber).
            sock.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
            self._secure(sock, EVENTS_DOMAIN)
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_request_bytes * 2)
            # A client reconnecting with its routing id takes it over: its retries are recognised.
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            # A reply that cannot be routed raises (counted in _route) instead of vanishing.
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            sock.setsockopt(zmq.RCVHWM, self._hwm)
            if self._curve_secret_key is not None:
                self._secure(sock, REQUESTS_DOMAIN)
        bound = []
        for endpoint in endpoints:
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                sock.close()
                hint = "another ZAP handler in this ZeroMQ context" if endpoint == ZAP_ENDPOINT else "another runtime"
                raise ConfigError(f"cannot listen on {endpoint}: {exc.strerror} (is {hint} running?)") from None
            bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        return sock, bound

    def _run(self) -> None:
        sockets: list[zmq.Socket[bytes]] = []
        try:
            # First: a handshake needing ZAP while no handler is bound would not be checked by ours.
            zap, _ = self._bind(zmq.REP, [ZAP_ENDPOINT])
            sockets.append(zap)
            pull, _ = self._bind(zmq.PULL, [self._outbox_endpoint])
            sockets.append(pull)
            pub, self.bound_event_endpoints = self._bind(zmq.XPUB, self._event_endpoints)
            sockets.append(pub)
            router, self.bound_endpoints = self._bind(zmq.ROUTER, self._request_endpoints)
            sockets.append(router)
        except BaseException as exc:
            for sock in sockets:
                sock.close()
            self._bind_error = exc
            self._bound.set()
            return
        self._bound.set()
        try:
            self._serve(router, pub, pull, zap)
        finally:
            for sock in sockets:
                sock.close()

    def _serve(
        self, router: zmq.Socket[bytes], pub: zmq.Socket[bytes], pull: zmq.Socket[bytes], zap: zmq.Socket[bytes]
    ) -> None:
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        poller.register(pub, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(_POLL_MS))
            if zap in ready:
                self.doorkeeper.serve(zap)
            if pull in ready:
                self._forward(pull, router, pub)
            if router in ready:
                self._receive(router)
            while pub in ready and _readable(pub):
                pub.recv()  # (un)subscriptions: filtering is ZeroMQ's; they are only drained
        self._forward(pull, router, pub)
        if self._abort_with is not None:
            for identity, request_id in self._requests.in_flight():
                reply = encode_error(request_id, self._abort_with)
                self._send(router, identity, request_id, reply, outcome(self._abort_with))

    def _forward(self, pull: zmq.Socket[bytes], router: zmq.Socket[bytes], pub: zmq.Socket[bytes]) -> None:
        # EVENTS tells whether more is queued without the cost of a zmq.Again exception.
        for _ in range(_BATCH * 4):
            if not _readable(pull):
                return
            frames = pull.recv_multipart()
            if frames[0] == KIND_REPLY:  # see Outbox: kind, identity, request id, retryable, reply
                _, identity, request_id, result, payload = frames
                self._send(router, identity, request_id.decode(), payload, result)
            elif frames[0] == KIND_EVENT:
                pub.send_multipart(frames[1:])

    def _send(self, router: zmq.Socket[bytes], identity: bytes, request_id: str, reply: bytes, result: bytes) -> None:
        """Send a reply to a registered request; ``result`` is its outcome frame (see ``Outbox``)."""
        done = self._requests.finish(identity, request_id, reply, keep=result != RETRYABLE)
        self._route(router, identity, reply)
        if done is not None and self._observe is not None:
            self._observe(done[0], done[1], result == OK)

    def _route(self, router: zmq.Socket[bytes], identity: bytes, reply: bytes) -> None:
        """Hand a reply to ZeroMQ without waiting: a client gone or not reading loses it (retries get it)."""
        try:
            router.send_multipart([identity, reply], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: no such client now; EAGAIN: its queue is full
            self.dropped_replies += 1
            log.debug("dropped a reply of %d bytes to client %r: %s", len(reply), identity, exc.strerror)

    def _receive(self, router: zmq.Socket[bytes]) -> None:
        for _ in range(_BATCH):
            if not _readable(router):
                return
            frames = router.recv_multipart()
            identity = frames[0]
            request_id, reply, result = self._handle(identity, frames[1:])
            if reply is None:
                continue
            if request_id is None:  # not registered: malformed, unauthorized or a duplicate's kept reply
                self._route(router, identity, reply)
            else:
                self._send(router, identity, request_id, reply, result)

    def _handle(self, identity: bytes, frames: list[bytes]) -> tuple[str | None, bytes | None, bytes]:
        """Turn one request into its id as registered, its encoded reply and the reply's outcome.

        The reply is ``None`` if an actor will answer or the request is a retry still in
        flight; the id is ``None`` if the request was not registered. The outcome is
        ``OK``, ``RETRYABLE`` or ``ERROR`` (see ``runtime.wire.outbox``).
        """
        request_id = ""
        registered = False
        reply: bytes | None
        try:
            if len(frames) != 1:
                raise BadRequest(f"expected exactly one frame per request, got {len(frames)}")
            if len(frames[0]) > self._max_request_bytes:
                raise BadRequest(f"request of {len(frames[0])} bytes exceeds the limit of {self._max_request_bytes}")
            try:
                request = decode_request(frames[0])
            except msgspec.DecodeError as exc:
                raise BadRequest(f"malformed request: {exc}") from None
            request_id = request.id
            if not hmac.compare_digest(request.token.encode(), self._token):
                raise Unauthorized(
                    "missing or wrong token: pass the token from WORKSPACE_AUTH_TOKEN or STATE_DIR/token"
                )
            if request.op not in OPS:
                raise BadRequest(f"unknown op {request.op!r}: expected one of {', '.join(OPS)}")
            if request_id:  # an empty id cannot tell requests apart: no retry protection
                seen = self._requests.begin(identity, request_id, request.op)
                if seen is PENDING:
                    return None, None, OK
                if isinstance(seen, bytes):
                    return None, seen, OK
                registered = True
            try:
                args = decode_args(request.op, request.args)
            except msgspec.DecodeError as exc:
                raise BadRequest(invalid_args(request.op, request.args, exc)) from None
            if self._draining:
                raise ProviderUnavailable("the runtime is shutting down; retry against the next instance")
            value = self._dispatch(identity, request, args)
        except WorkspaceError as exc:
            reply, result = encode_error(request_id, exc), outcome(exc)
        except Exception:
            log.exception("request %s failed inside the runtime", request_id)
            reply, result = encode_error(request_id, InternalError("internal error; see the runtime's log")), ERROR
        else:
            reply, result = (None if value is DEFERRED else encode_ok(request_id, value)), OK
        return (request_id if registered else None), reply, result
