"""Docker's multiplexed exec stream, without Docker: the test plays the daemon's end."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.agent.program import _Process
from runtime.errors import Conflict, NotFound, ProviderUnavailable
from runtime.providers.docker.exec_stream import ExecStream, _take_frames, docker_demux, open_unix_exec, pump

STDOUT, STDERR = 1, 2


def frame(kind: int, payload: bytes) -> bytes:
    """One multiplexed frame: stream id, three zero bytes, big-endian u32 length, payload."""
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def read_to_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------------- frames


def test_frames_split_across_feeds_come_out_whole_and_in_order() -> None:
    stream = frame(STDOUT, b"hello ") + frame(STDERR, b"oops") + frame(STDOUT, b"") + frame(STDOUT, b"world")
    buffer = bytearray()
    taken: list[tuple[int, bytes]] = []
    for i in range(len(stream)):
        buffer += stream[i : i + 1]
        taken += _take_frames(buffer)
        # Whatever was not taken is exactly the incomplete tail of the stream so far.
        consumed = sum(8 + len(payload) for _, payload in taken)
        assert bytes(buffer) == stream[consumed : i + 1]
    assert taken == [(STDOUT, b"hello "), (STDERR, b"oops"), (STDOUT, b""), (STDOUT, b"world")]
    assert buffer == bytearray()


def test_complete_frames_are_removed_and_a_partial_one_is_left_for_later() -> None:
    partial = frame(STDERR, b"not yet complete")[:12]
    buffer = bytearray(frame(STDOUT, b"a") + frame(STDERR, b"bc") + partial)
    assert list(_take_frames(buffer)) == [(STDOUT, b"a"), (STDERR, b"bc")]
    assert bytes(buffer) == partial
    assert list(_take_frames(buffer)) == []
    assert bytes(buffer) == partial


def test_the_demux_returns_stdout_and_logs_stderr_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    demux = docker_demux("agent of aw-one")
    stream = frame(STDOUT, b"first ") + frame(STDERR, b"something went wrong\n") + frame(STDOUT, b"second")
    caplog.set_level(logging.WARNING, logger="runtime.providers.docker.exec_stream")
    out = b"".join(demux(piece) for piece in in_pieces(stream, 5))
    assert out == b"first second"
    warnings = [r for r in caplog.records if r.name == "runtime.providers.docker.exec_stream"]
    assert [(r.levelno, r.getMessage()) for r in warnings] == [
        (logging.WARNING, "agent of aw-one: something went wrong")
    ]


def test_the_demux_keeps_partial_frames_until_they_complete(caplog: pytest.LogCaptureFixture) -> None:
    demux = docker_demux("agent of aw-two")
    caplog.set_level(logging.WARNING, logger="runtime.providers.docker.exec_stream")
    stderr, stdout = frame(STDERR, b"\xffbad utf-8\n\n"), frame(STDOUT, b"out")
    assert demux(stderr[:6]) == b""
    assert caplog.records == []
    assert demux(stderr[6:] + stdout[:9]) == b""
    assert [r.getMessage() for r in caplog.records] == ["agent of aw-two: \ufffdbad utf-8"]
    assert demux(stdout[9:]) == b"out"
    assert demux(b"") == b""
    assert len(caplog.records) == 1


def test_what_the_agents_stderr_says_is_logged_as_one_line_of_bounded_length(caplog: pytest.LogCaptureFixture) -> None:
    demux = docker_demux("agent of aw-three")
    caplog.set_level(logging.WARNING, logger="runtime.providers.docker.exec_stream")
    forged = b"hi\nERROR runtime.app: Traceback (most recent call last):\x1b[2J\n"
    demux(frame(STDERR, forged) + frame(STDERR, b"x" * 5000))
    assert [r.getMessage() for r in caplog.records] == [
        "agent of aw-three: hi\\nERROR runtime.app: Traceback (most recent call last):\\x1b[2J",
        f"agent of aw-three: {'x' * 1000}... (5000 characters)",
    ]


# ---------------------------------------------------------------------- pump


class PlayedDocker:
    """The daemon's end of a socket pair, played by ``script`` on its own thread."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self._thread.start()

    def _run(self, script: Callable[[socket.socket], None]) -> None:
        try:
            script(self.theirs)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        """Close our end (a blocked script sees EOF), join the script, re-raise what it raised."""
        with contextlib.suppress(OSError):
            self.ours.shutdown(socket.SHUT_RDWR)
        self.ours.close()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the played daemon never finished"
        self.theirs.close()
        if self.error is not None:
            raise self.error


PlayDocker = Callable[[Callable[[socket.socket], None]], PlayedDocker]


@pytest.fixture
def play_docker() -> Iterator[PlayDocker]:
    played: list[PlayedDocker] = []

    def play(script: Callable[[socket.socket], None]) -> PlayedDocker:
        played.append(PlayedDocker(script))
        return played[-1]

    yield play
    for each in played:
        each.finish()


def soon() -> float:
    """A deadline that only a hang reaches: the test then fails instead of hanging."""
    return time.monotonic() + 30


def test_pump_splits_interleaved_frames_into_stdout_and_stderr(play_docker: PlayDocker) -> None:
    frames = [
        frame(STDOUT, b"line 1\n"),
        frame(STDERR, b"warning: a\n"),
        frame(STDOUT, b"line 2\n"),
        frame(STDERR, b"warning: b\n"),
        frame(STDOUT, bytes(range(256)) * 40),
    ]

    def docker(sock: socket.socket) -> None:
        for piece in in_pieces(b"".join(frames), 7):
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)

    played = play_docker(docker)
    out, err, timed_out = pump(ExecStream(played.ours), stdin=None, deadline=soon())
    assert out == b"line 1\nline 2\n" + bytes(range(256)) * 40
    assert err == b"warning: a\nwarning: b\n"
    assert timed_out is False


def test_pump_delivers_all_of_stdin_then_shuts_the_write_side(play_docker: PlayDocker) -> None:
    data = os.urandom(3 << 20)
    received: list[bytes] = []

    def docker(sock: socket.socket) -> None:
        received.append(read_to_eof(sock))  # returns only once the write side is shut
        sock.sendall(frame(STDOUT, f"{len(received[0])} bytes\n".encode()))
        sock.close()

    played = play_docker(docker)
    out, err, timed_out = pump(ExecStream(played.ours), stdin=data, deadline=soon())
    assert (out, err, timed_out) == (f"{len(data)} bytes\n".encode(), b"", False)
    assert received == [data]


def test_pump_reads_while_writing_so_a_process_echoing_its_input_cannot_deadlock(play_docker: PlayDocker) -> None:
    data = os.urandom(8 << 20)  # far more than the socket buffers hold either way

    def echo(sock: socket.socket) -> None:
        while chunk := sock.recv(65536):
            sock.sendall(frame(STDOUT, chunk))
        sock.sendall(frame(STDERR, b"eof\n"))
        sock.close()

    played = play_docker(echo)
    out, err, timed_out = pump(ExecStream(played.ours), stdin=data, deadline=soon(), limit=len(data))
    assert timed_out is False
    assert out == data
    assert err == b"eof\n"


def test_empty_stdin_shuts_the_write_side_at_once(play_docker: PlayDocker) -> None:
    def docker(sock: socket.socket) -> None:
        assert read_to_eof(sock) == b""
        sock.sendall(frame(STDOUT, b"saw eof"))
        sock.close()

    played = play_docker(docker)
    assert pump(ExecStream(played.ours), stdin=b"", deadline=soon()) == (b"saw eof", b"", False)


def test_without_stdin_the_write_side_stays_open(play_docker: PlayDocker) -> None:
    later: list[bytes] = []

    def docker(sock: socket.socket) -> None:
        sock.sendall(frame(STDOUT, b"done"))
        sock.shutdown(socket.SHUT_WR)
        later.append(read_to_eof(sock))

    played = play_docker(docker)
    assert pump(ExecStream(played.ours), stdin=None, deadline=soon()) == (b"done", b"", False)
    played.ours.setblocking(True)
    played.ours.sendall(b"still writable")  # would fail with EPIPE had pump shut it
    played.ours.shutdown(socket.SHUT_WR)
    played.finish()
    assert later == [b"still writable"]


def test_a_process_that_never_reads_its_stdin_still_has_its_output_read(play_docker: PlayDocker) -> None:
    def docker(sock: socket.socket) -> None:
        sock.sendall(frame(STDOUT, b"ignored my input\n"))
        sock.close()  # like `true`: exits with its stdin unread

    played = play_docker(docker)
    out, err, timed_out = pump(ExecStream(played.ours), stdin=os.urandom(16 << 20), deadline=soon())
    assert (out, err, timed_out) == (b"ignored my input\n", b"", False)


def test_frames_of_other_stream_ids_are_ignored(play_docker: PlayDocker) -> None:
    def docker(sock: socket.socket) -> None:
        sock.sendall(frame(0, b"stdin echo") + frame(STDOUT, b"out") + frame(3, b"system error") + frame(STDERR, b"e"))
        sock.close()

    played = play_docker(docker)
    assert pump(ExecStream(played.ours), stdin=None, deadline=soon()) == (b"out", b"e", False)


def agent_capture(limit: int, chunks: list[bytes]) -> bytes:
    """What the agent keeps of ``chunks`` on stdout with ``limit`` (its own code, run here)."""
    process = SimpleNamespace(limit=limit, output={"stdout": bytearray()}, dropped={"stdout": 0})
    for chunk in chunks:
        _Process.keep(process, "stdout", chunk)  # type: ignore[arg-type]
    return _Process.captured(process, "stdout")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chunks", "limit", "expected_dropped"),
    [
        ([600, 600, 600], 1000, 800),
        ([1000], 1000, 0),
        ([999, 1, 1], 1000, 1),
        ([5000], 0, 5000),
    ],
)
def test_output_beyond_the_limit_is_replaced_by_the_same_marker_as_the_agent_s(
    play_docker: PlayDocker, chunks: list[int], limit: int, expected_dropped: int
) -> None:
    payloads = [os.urandom(size) for size in chunks]

    def docker(sock: socket.socket) -> None:
        for payload in payloads:
            sock.sendall(frame(STDOUT, payload))
        sock.sendall(frame(STDERR, b"small"))
        sock.close()

    played = play_docker(docker)
    out, err, timed_out = pump(ExecStream(played.ours), stdin=None, deadline=soon(), limit=limit)
    kept = b"".join(payloads)[:limit]
    marker = f"\n[output truncated: {expected_dropped} bytes omitted]\n".encode() if expected_dropped else b""
    assert out == kept + marker
    assert out == agent_capture(limit, payloads)
    assert err == (b"small" if limit >= 5 else b"small"[:limit] + b"\n[output truncated: 5 bytes omitted]\n")
    assert timed_out is False


def test_stderr_is_limited_on_its_own(play_docker: PlayDocker) -> None:
    def docker(sock: socket.socket) -> None:
        sock.sendall(frame(STDERR, b"e" * 150) + frame(STDOUT, b"o" * 100) + frame(STDERR, b"e" * 50))
        sock.close()

    played = play_docker(docker)
    out, err, _ = pump(ExecStream(played.ours), stdin=None, deadline=soon(), limit=100)
    assert out == b"o" * 100
    assert err == b"e" * 100 + b"\n[output truncated: 100 bytes omitted]\n"


def test_at_the_deadline_pump_returns_the_output_so_far_as_timed_out(play_docker: PlayDocker) -> None:
    release = threading.Event()

    def docker(sock: socket.socket) -> None:
        sock.sendall(frame(STDOUT, b"so far") + frame(STDERR, b"err so far") + frame(STDOUT, b"never whole")[:10])
        release.wait(30)  # the process keeps running past the deadline
        sock.close()

    played = play_docker(docker)
    try:
        out, err, timed_out = pump(ExecStream(played.ours), stdin=None, deadline=time.monotonic() + 0.5)
    finally:
        release.set()
    assert (out, err, timed_out) == (b"so far", b"err so far", True)


def test_a_deadline_also_stops_writing_stdin_nobody_reads(play_docker: PlayDocker) -> None:
    release = threading.Event()

    def docker(sock: socket.socket) -> None:
        sock.sendall(frame(STDOUT, b"started"))
        release.wait(30)  # reads nothing: our sends fill the buffers and then block

    played = play_docker(docker)
    try:
        result = pump(ExecStream(played.ours), stdin=bytes(32 << 20), deadline=time.monotonic() + 0.5)
    finally:
        release.set()
    assert result == (b"started", b"", True)


def test_pending_bytes_from_the_upgrade_are_parsed_before_the_socket(play_docker: PlayDocker) -> None:
    second = frame(STDOUT, b"and the rest from the socket")
    pending = frame(STDOUT, b"read with the headers; ") + frame(STDERR, b"early warning") + second[:11]

    def docker(sock: socket.socket) -> None:
        sock.sendall(second[11:] + frame(STDERR, b"; late warning"))
        sock.close()

    played = play_docker(docker)
    out, err, timed_out = pump(ExecStream(played.ours, pending), stdin=None, deadline=soon())
    assert out == b"read with the headers; and the rest from the socket"
    assert err == b"early warning; late warning"
    assert timed_out is False


def test_pending_frames_count_even_when_the_deadline_has_already_passed(play_docker: PlayDocker) -> None:
    release = threading.Event()

    def docker(sock: socket.socket) -> None:
        release.wait(30)

    played = play_docker(docker)
    try:
        stream = ExecStream(played.ours, frame(STDOUT, b"pending") + frame(STDERR, b"too"))
        assert pump(stream, stdin=None, deadline=time.monotonic() - 1) == (b"pending", b"too", True)
    finally:
        release.set()


# ---------------------------------------------------------------------- open_unix_exec


class FakeDaemon:
    """A Unix socket that answers one exec start as scripted, then reads the client's stdin.

    ``answer`` is sent in pieces after the request is read (``None``: hang up at once);
    then everything the client sends until it shuts its write side is kept as ``stdin``,
    ``tail`` is sent, and the connection closed. ``client_done`` is set once the client
    has closed (or shut) its end.
    """

    def __init__(self, path: Path, answer: list[bytes] | None, tail: list[bytes] | None = None) -> None:
        self.path = str(path)
        self.answer, self.tail = answer, tail or []
        self.request = b""
        self.stdin = b""
        self.client_done = threading.Event()
        self.error: BaseException | None = None
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._listener.settimeout(30)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return  # stopped before anyone connected
        try:
            with conn:
                conn.settimeout(30)
                self.request = self._read_request(conn)
                if self.answer is None:
                    return
                for piece in self.answer:
                    conn.sendall(piece)
                self.stdin = read_to_eof(conn)
                self.client_done.set()
                for piece in self.tail:
                    conn.sendall(piece)
        except BaseException as exc:
            self.error = exc

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the fake daemon never finished"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self.error is not None:
            raise self.error


MakeDaemon = Callable[..., FakeDaemon]


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    daemons: list[FakeDaemon] = []

    def make(answer: list[bytes] | None, tail: list[bytes] | None = None) -> FakeDaemon:
        daemons.append(FakeDaemon(tmp_path / f"docker{len(daemons)}.sock", answer, tail))
        return daemons[-1]

    yield make
    for daemon in daemons:
        daemon.stop()


UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


def error_answer(status: int, reason: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_an_upgraded_exec_returns_its_stream_with_the_bytes_read_after_the_headers(fake_daemon: MakeDaemon) -> None:
    early = frame(STDOUT, b"early ")
    daemon = fake_daemon([UPGRADED + early], tail=[frame(STDOUT, b"late"), frame(STDERR, b"bye")])
    stream = open_unix_exec(daemon.path, "1.45", "0123abcd", timeout=30)
    with stream.sock:
        assert stream.pending == early
        out, err, timed_out = pump(stream, stdin=b"the input", deadline=soon())
    assert (out, err, timed_out) == (b"early late", b"bye", False)
    assert daemon.stdin == b"the input"
    head, body = daemon.request.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1.45/exec/0123abcd/start HTTP/1.1"
    assert {b"Connection: Upgrade", b"Upgrade: tcp", b"Content-Type: application/json"} <= set(lines[1:])
    assert json.loads(body) == {"Detach": False, "Tty": False}
    assert f"Content-Length: {len(body)}".encode() in lines


def test_an_answer_split_across_reads_is_reassembled(fake_daemon: MakeDaemon) -> None:
    whole = UPGRADED + frame(STDOUT, b"x")
    daemon = fake_daemon(in_pieces(whole, 3))
    stream = open_unix_exec(daemon.path, "1.44", "e1", timeout=30)
    with stream.sock:
        assert pump(stream, stdin=b"", deadline=soon()) == (b"x", b"", False)


def test_a_200_answer_is_accepted_like_an_upgrade(fake_daemon: MakeDaemon) -> None:
    daemon = fake_daemon([b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"])
    stream = open_unix_exec(daemon.path, "1.41", "e2", timeout=30)
    with stream.sock:
        assert stream.pending == b""
        assert pump(stream, stdin=b"", deadline=soon()) == (b"", b"", False)


@pytest.mark.parametrize(
    ("status", "reason", "family", "retryable", "words"),
    [
        (404, "Not Found", NotFound, False, "exec target not found: No such exec instance: e3"),
        (409, "Conflict", Conflict, False, "workspace is not running: Container aw-x is not running"),
        (500, "Internal Server Error", ProviderUnavailable, True, "Docker exec failed (500): oci runtime failed"),
        (503, "Service Unavailable", ProviderUnavailable, True, "Docker exec failed (503): shutting down"),
        (400, "Bad Request", ProviderUnavailable, False, "Docker exec failed (400): bad"),
    ],
)
def test_an_error_answer_becomes_its_workspace_error_and_the_socket_is_closed(
    fake_daemon: MakeDaemon, status: int, reason: str, family: type[Exception], retryable: bool, words: str
) -> None:
    message = words.split(": ", 1)[1]
    body = json.dumps({"message": message}).encode()
    answer = error_answer(status, reason, body)
    daemon = fake_daemon([answer[: len(answer) - len(body) // 2], answer[len(answer) - len(body) // 2 :]])
    with pytest.raises(family) as caught:
        open_unix_exec(daemon.path, "1.45", "e3", timeout=30)
    assert type(caught.value) is family
    assert str(caught.value) == words
    assert getattr(caught.value, "retryable", None) is retryable
    assert daemon.client_done.wait(30), "the exec's socket was left open"


def test_an_error_body_that_is_not_json_is_reported_as_text(fake_daemon: MakeDaemon) -> None:
    daemon = fake_daemon([error_answer(502, "Bad Gateway", b"upstream went away")])
    with pytest.raises(ProviderUnavailable, match=r"Docker exec failed \(502\): upstream went away") as caught:
        open_unix_exec(daemon.path, "1.45", "e4", timeout=30)
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 teapot\r\n\r\n",
        b"SMTP 220 hello\r\n\r\n",
    ],
)
def test_an_answer_that_is_not_http_is_unavailable_not_a_crash(fake_daemon: MakeDaemon, answer: bytes) -> None:
    daemon = fake_daemon([answer])
    with pytest.raises(ProviderUnavailable, match="answered the exec with something that is not HTTP"):
        open_unix_exec(daemon.path, "1.45", "e8", timeout=30)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 500 X\r\nContent-Length: 2\r\n\r\n[]", r"Docker exec failed \(500\): \[\]"),
        (b"HTTP/1.1 500 X\r\nContent-Length: abc\r\n\r\n", r"Docker exec failed \(500\): $"),
    ],
)
def test_an_error_with_an_odd_body_or_length_is_still_reported_as_an_error(
    fake_daemon: MakeDaemon, answer: bytes, words: str
) -> None:
    daemon = fake_daemon([answer])
    with pytest.raises(ProviderUnavailable, match=words):
        open_unix_exec(daemon.path, "1.45", "e9", timeout=30)


def test_a_daemon_that_hangs_up_before_answering_is_unavailable(fake_daemon: MakeDaemon) -> None:
    daemon = fake_daemon(None)
    with pytest.raises(ProviderUnavailable, match="closed the exec connection before answering"):
        open_unix_exec(daemon.path, "1.45", "e5", timeout=30)
    assert b"/exec/e5/start" in daemon.request


def test_a_daemon_that_never_answers_is_unavailable_once_the_timeout_passes(fake_daemon: MakeDaemon) -> None:
    daemon = fake_daemon([])  # reads the request, then waits for the client to go
    with pytest.raises(ProviderUnavailable, match="not reachable") as caught:
        open_unix_exec(daemon.path, "1.45", "e6", timeout=0.3)
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert daemon.client_done.wait(30), "the exec's socket was left open"


def test_a_socket_nobody_listens_on_is_unavailable_and_retryable(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.sock")
    with pytest.raises(ProviderUnavailable, match=f"Docker daemon not reachable at {path}") as caught:
        open_unix_exec(path, "1.45", "e7", timeout=30)
    assert caught.value.retryable is True
