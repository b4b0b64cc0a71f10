"""Test helpers: waiting on events and conditions with deadlines instead of sleeping."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.wire import Subscriber


def wait_for_event(
    events: Subscriber, match: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
) -> dict[str, Any]:
    """The first event satisfying ``match`` within ``timeout_s`` (others are skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the expected event never came"
        _, event = events.recv(remaining)
        if match(event):
            return event


def events_until(
    events: Subscriber,
    stop: Callable[[dict[str, Any]], bool],
    keep: Callable[[dict[str, Any]], bool],
    timeout_s: float = 60.0,
) -> list[dict[str, Any]]:
    """Every event satisfying ``keep`` that arrives before the first one satisfying ``stop``.

    The runtime publishes state changes and alerts in one ``seq`` order, so an event that
    is known to come (``stop``) bounds the ones before it: no quiet window is needed to
    say that nothing else came.
    """
    seen = []
    while True:
        event = wait_for_event(events, lambda event: stop(event) or keep(event), timeout_s)
        if stop(event):
            return seen
        seen.append(event)


def workspace_event(workspace_id: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A matcher for events about ``workspace_id`` whose ``fields`` have the given values."""

    def match(event: dict[str, Any]) -> bool:
        return event.get("workspace_id") == workspace_id and all(event.get(k) == v for k, v in fields.items())

    return match


def poll_until(condition: Callable[[], bool], timeout_s: float = 60.0, every_s: float = 0.05) -> None:
    """Re-check ``condition`` until it holds; fail after ``timeout_s`` (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        pause.wait(every_s)


class UnixProxy:
    """A Unix socket that forwards every connection to another one (e.g. Docker's).

    Stopping it closes the listener and every connection, as a daemon dying would.
    """

    def __init__(self, path: str, target: str = "/var/run/docker.sock") -> None:
        self.path, self.target = path, target
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(64)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
