"""The runtime's end of one workspace agent's channel (the agent is ``runtime.agent.program``).

The channel is a byte stream both ways: requests go out raw on the agent's stdin; its
stdout comes back either raw or, for a ``docker exec``, as Docker's multiplexed stream,
which a ``demux`` (the Docker provider's ``docker_demux``) turns back into stdout bytes. A reader
thread turns those bytes into frames, hands each reply to the call waiting for its
``id`` and each process event to the sink registered for the process. When the stream
ends (the agent died, the workspace stopped) every waiting call fails with ``AgentGone``
and every sink hears that its process is lost.

Code in the workspace can write to the agent's stdout (``/proc/<agent>/fd/1``), so what
arrives is checked before it is believed: a frame larger than any the agent sends, a
header that is not JSON, or fields of the wrong type end the channel - the call in
flight fails with ``AgentGone``, and the next one starts a new agent - with one warning
in the log, never an exception escaping the reader.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from runtime.agent.files import MAX_FILE_BYTES
from runtime.agent.program import BOOTSTRAP, NAME, FrameReader, encode_frame
from runtime.errors import Conflict, Timeout
from runtime.providers.base import ProcessSink

__all__ = ["AGENT_ARGV", "AgentChannel", "AgentGone"]

log = logging.getLogger(__name__)

AGENT_ARGV = ["python3", "-I", "-S", "-c", BOOTSTRAP, NAME]
"""How an agent is started in a workspace; its source follows on stdin (see ``runtime.agent.program``).

Isolated (``-I``: no ``PYTHON*`` variables, no user site) and without ``site`` (``-S``):
the workspace's Python setup cannot change the agent, and it starts smaller (~12 MiB)."""
_SOURCE = (Path(__file__).parent / "program.py").read_bytes()

Frame = tuple[dict[str, Any], bytes]

_MAX_HEADER = 1 << 20  # the agent's headers are a few hundred bytes
_MAX_PAYLOAD = 2 * MAX_FILE_BYTES + (1 << 20)  # a file read by `run`: stdout and stderr at their limit
_EVENT_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "hello": {"pid": int},
    "out": {"key": str, "stream": str},
    "exit": {"key": str, "exit_code": int, "timed_out": bool, "duration_ms": (int, float)},
}
"""The fields each event of the agent must carry, and their types."""


def _check(header: dict[str, Any]) -> None:
    """Refuse a header the agent would not send (``ValueError``): it did not come from the agent."""
    if "ack" in header:
        fields: dict[str, type | tuple[type, ...]] = {"ack": int}
    elif "ev" in header:
        event = header["ev"]
        if not isinstance(event, str) or event not in _EVENT_FIELDS:
            raise ValueError(f"a frame carries an unknown event {str(event)[:40]!r}")
        fields = _EVENT_FIELDS[event]
    else:
        fields = {"id": int, "ok": bool}
    for name, kind in fields.items():
        value = header.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"a frame's {name!r} is {type(value).__name__}, not {getattr(kind, '__name__', kind)}")


class AgentGone(Exception):
    """The channel ended; ``sent`` says whether the agent had acknowledged the request.

    Only ``run`` requests are acknowledged (the others are answered at once), so for
    them ``sent`` false means the command never started and may safely run elsewhere.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class AgentChannel:
    """Calls to one agent over its connection; thread-safe.

    Args:
        sock: The connection (for Docker: the agent exec's hijacked socket).
        name: For logs (the workspace's handle).
        pending: Stream bytes already read with the connection's set-up.
        demux: Turns received bytes into the agent's stdout bytes (e.g. Docker's multiplexed stream).
    """

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        *,
        pending: bytes = b"",
        demux: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.name = name
        self.agent_pid = 0
        self._sock = sock
        self._sock.settimeout(None)
        self._demux = demux or (lambda data: data)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._waiters: dict[int, Future[Frame]] = {}
        self._acked: set[int] = set()  # requests the agent said it received
        self._sinks: dict[str, ProcessSink] = {}
        self._ids = itertools.count(1)
        self._alive = True
        self._hello: Future[dict[str, Any]] = Future()
        self._send(str(len(_SOURCE)).encode() + b"\n" + _SOURCE)
        self._reader = threading.Thread(target=self._read, args=(pending,), name=f"agent-{name}", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        """Whether the connection is still up."""
        return self._alive

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the agent's greeting.

        Raises:
            AgentGone: The agent ended (or never started) instead.
            Timeout: No greeting within ``timeout_s``.
        """
        try:
            hello = self._hello.result(timeout_s)
        except TimeoutError:
            raise Timeout(f"the agent of {self.name} did not start within {timeout_s:g} s") from None
        self.agent_pid = int(hello.get("pid", 0))

    def call(
        self,
        header: dict[str, Any],
        payload: bytes = b"",
        *,
        timeout_s: float | None = None,
        sink: ProcessSink | None = None,
    ) -> Frame:
        """Send a request and wait for its reply; ``sink`` receives a spawned process's events.

        Raises:
            AgentGone: The channel ended before or while the request was served.
            Timeout: No reply within ``timeout_s``.
            Conflict: ``sink`` is given for a process key that is already running.
        """
        future: Future[Frame] = Future()
        with self._lock:
            if not self._alive:
                raise AgentGone(f"the agent of {self.name} is not running", sent=False)
            if sink is not None and str(header["key"]) in self._sinks:  # never take a live process's sink
                raise Conflict(f"process {header['key']} is already running in the agent of {self.name}")
            request_id = next(self._ids)
            self._waiters[request_id] = future
            if sink is not None:
                self._sinks[str(header["key"])] = sink
        try:
            self._send(encode_frame({**header, "id": request_id}, payload))
        except OSError as exc:
            with self._lock:
                self._waiters.pop(request_id, None)
            self._gone()
            raise AgentGone(f"the agent of {self.name} could not be reached: {exc}", sent=False) from None
        try:
            frame = future.result(timeout_s)
        except TimeoutError:
            with self._lock:
                self._waiters.pop(request_id, None)
                self._acked.discard(request_id)
            self._forget_sink(header, sink)  # the caller was told it failed: nobody follows it
            raise Timeout(f"the agent of {self.name} did not answer within {timeout_s:g} s") from None
        if not frame[0].get("ok"):
            self._forget_sink(header, sink)
        return frame

    def _forget_sink(self, header: dict[str, Any], sink: ProcessSink | None) -> None:
        if sink is None:
            return
        with self._lock:
            if self._sinks.get(str(header["key"])) is sink:
                del self._sinks[str(header["key"])]

    def broken(self, what: str) -> AgentGone:
        """End the channel after a reply that makes no sense (``what``); return the error for its caller.

        Such a reply was forged by code in the workspace (or the stream lost its place):
        nothing after it can be trusted. The request had been received (``sent``): it may have run.
        """
        log.warning("the agent of %s sent %s: its channel is closed (a new agent starts)", self.name, what)
        self.close()
        return AgentGone(f"the agent of {self.name} sent {what}", sent=True)

    def close(self) -> None:
        """End the channel (the agent exits when its stdin closes); waiting calls fail."""
        with contextlib.suppress(OSError):  # already shut down
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._gone()

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self._sock.sendall(data)

    # ------------------------------------------------------------------ reader thread

    def _read(self, pending: bytes) -> None:
        frames = FrameReader(max_header=_MAX_HEADER, max_payload=_MAX_PAYLOAD)
        data = pending
        received = b""
        try:
            while True:
                received = self._demux(data)
                for frame in frames.feed(received):
                    _check(frame[0])
                    self._deliver(frame)
                data = self._sock.recv(1 << 20)
                if not data:
                    return
        except OSError as exc:
            if self._alive:
                log.debug("the channel to the agent of %s ended: %s", self.name, exc)
        except ValueError as exc:
            if not self._hello.done():
                # Before its greeting the agent has written nothing: these bytes say why its
                # process did not start (Docker writes "OCI runtime exec failed: ..." into the
                # stream, e.g. when the workspace is being destroyed). Its starter reports it.
                said = received.decode(errors="replace").strip()[:300] or str(exc)
                self._hello.set_exception(AgentGone(f"the agent of {self.name} did not start: {said}", sent=False))
            else:  # not the agent's frames: something in the workspace wrote them
                log.warning("the agent of %s sent garbage (%s): its channel is closed", self.name, exc)
            self.close()  # the agent sees its stdin end and exits; the next call starts another
        finally:
            self._gone()

    def _deliver(self, frame: Frame) -> None:
        header, payload = frame
        event = header.get("ev")
        if "ack" in header:
            with self._lock:
                if header["ack"] in self._waiters:
                    self._acked.add(header["ack"])
            return
        if event is None:
            with self._lock:
                future = self._waiters.pop(header.get("id", -1), None)
                self._acked.discard(header.get("id", -1))
            if future is not None:
                future.set_result(frame)
            return
        if event == "hello":
            if not self._hello.done():
                self._hello.set_result(header)
            return
        key = str(header.get("key"))
        with self._lock:
            sink = self._sinks.get(key) if event == "out" else self._sinks.pop(key, None)
        if sink is None:
            return
        try:
            if event == "out":
                sink.output(str(header.get("stream")), payload)
            elif event == "exit":
                sink.exited(int(header["exit_code"]), bool(header["timed_out"]), float(header["duration_ms"]), None)
        except Exception:
            log.exception("handling an event of the agent of %s failed", self.name)

    def _gone(self) -> None:
        with self._lock:
            if not self._alive and not self._waiters and not self._sinks:
                return
            self._alive = False
            waiters, self._waiters = self._waiters, {}
            acked, self._acked = self._acked, set()
            sinks, self._sinks = self._sinks, {}
        if not self._hello.done():
            self._hello.set_exception(AgentGone(f"the agent of {self.name} stopped as it started", sent=False))
        for request_id, future in waiters.items():
            # Unacknowledged requests never reached a live agent; run-requests always ack.
            future.set_exception(AgentGone(f"the agent of {self.name} stopped", sent=request_id in acked))
        for sink in sinks.values():
            with contextlib.suppress(Exception):
                sink.exited(None, False, 0.0, f"the workspace's agent stopped ({self.name}); the process is lost")
