"""The workspace agent: a small process inside each workspace that runs commands fast.

It needs only ``python3`` (3.8 or newer, standard library only) in the image. The
runtime starts it with one ``docker exec`` whose attached stdin and stdout are the
channel - nothing listens on a port another workspace could reach - and sends this
file's source over that stdin first (``BOOTSTRAP`` reads and runs it), so nothing is
installed in the image and the process list shows a short command line. The agent then
greets with a ``hello`` event and serves frames:

    frame = u32 header length | u32 payload length | header (JSON object) | payload bytes

Requests carry an ``id`` and an ``op``; every request gets one reply with the same
``id`` (``ok`` true, or false with ``code`` and ``error``):

- ``run``: ``argv``, ``cwd``, ``env``, ``timeout_s``, ``limit`` (bytes kept per output
  stream); payload: stdin. An ``ack`` frame (``{"ack": id}``) says it was received;
  the reply comes when the command exits: ``exit_code``, ``timed_out``, ``duration_ms``,
  ``stdout_len``; payload: stdout then stderr.
- ``spawn``: the same plus ``key`` (the runtime's process id) and ``stdin_open``. The
  reply comes at once with ``pid``; then ``out`` events (``key``, ``stream``; payload:
  the chunk, in order) and one ``exit`` event follow.
- ``stdin``: ``key``, ``close``; payload: bytes for a spawned command's stdin.
- ``kill``: ``key``, ``signal`` - sent to the command's whole process group.
- ``read``: ``path``, ``limit``; the reply's payload is the file. ``write``: ``path``,
  ``mode``; payload: the file's new contents. Paths are resolved (symbolic links as the
  workspace sees them) and must stay under ``/workspace``; a refusal says why in
  ``reason`` (``outside``, ``missing``, ``is_dir``, ``too_big``, as ``runtime.agent.files``).
- ``ping``: answers with the agent's ``pid``.

Every command runs in its own session (process group), so a timeout or a kill ends all
of it (a SIGKILL is repeated while the group has members, so a fork racing it cannot
escape). Output is read as it comes (a spawned command's small writes are sent
together, at most 2 ms late, each stream in order); when the runtime reads slowly the
agent blocks on its writes, so commands block on theirs: back-pressure, nothing dropped.
When the channel closes (the runtime went away), or on SIGTERM, the agent hangs up its
commands (``SIGHUP`` to their groups, as a terminal does) and exits. Started with
``--exclusive``, it first asks any other agent in the workspace to stop: the runtime
starts a new one only after losing the old one's channel.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, BinaryIO

__all__ = ["BOOTSTRAP", "EXCLUSIVE", "NAME", "FrameReader", "encode_frame", "main"]

NAME = "aw-agent"
"""The agent's argument after its program: how it is found in a workspace's process list."""
EXCLUSIVE = "--exclusive"
"""An argument saying this agent is the workspace's only one: it stops any other it finds."""
BOOTSTRAP = (
    "import sys;b=sys.stdin.buffer;n=int(b.readline());"
    "exec(compile(b.read(n),'aw-agent','exec'),{'__name__':'aw_agent'})"
)
"""The ``python3 -c`` program that reads the agent's source (its length, a newline, the
source) from stdin and runs it."""

ROOT = "/workspace"
_SIZES = struct.Struct(">II")
_CHUNK = 65536
_DEFAULT_LIMIT = 8 << 20
_COALESCE_S = 0.002  # small writes of a spawned command are sent together, at most this late ...
# ... unless it is interactive (stdin kept open: a REPL, an MCP server) and a line ended: its
# reader waits for that line, and 2 ms per answer is most of a round trip.
_GRACE_S = 1.0  # after a timeout's SIGKILL, how long a command's escaped children may hold its pipes
_REKILL_EVERY_S = 0.05  # a SIGKILLed group is killed again while members remain ...
_REKILL_FOR_S = 5.0  # ... for this long (a fork racing the first kill escapes it under gVisor)


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: sizes, JSON header, payload."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return _SIZES.pack(len(head), len(payload)) + head + payload


class FrameReader:
    """Reassembles frames from bytes as they arrive.

    Args:
        max_header: The longest header accepted; ``None``: any.
        max_payload: The longest payload accepted; ``None``: any. Sizes beyond these are
            not frames but garbage (waiting for gigabytes that never come would wedge the reader).
    """

    def __init__(self, max_header: int | None = None, max_payload: int | None = None) -> None:
        self._buffer = bytearray()
        self._max_header = max_header
        self._max_payload = max_payload

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        """Add bytes; return every frame now complete.

        Raises:
            ValueError: A header is not a JSON object, or a size is beyond the limits.
        """
        self._buffer += data
        frames = []
        while len(self._buffer) >= _SIZES.size:
            head_len, payload_len = _SIZES.unpack_from(self._buffer)
            if self._max_header is not None and head_len > self._max_header:
                raise ValueError(f"a frame announces a {head_len}-byte header (at most {self._max_header})")
            if self._max_payload is not None and payload_len > self._max_payload:
                raise ValueError(f"a frame announces a {payload_len}-byte payload (at most {self._max_payload})")
            end = _SIZES.size + head_len + payload_len
            if len(self._buffer) < end:
                break
            try:
                header = json.loads(bytes(self._buffer[_SIZES.size : _SIZES.size + head_len]))
            except RecursionError:  # JSON nested deeper than the parser goes
                raise ValueError("a frame header is nested too deeply") from None
            if not isinstance(header, dict):
                raise ValueError("a frame header is not a JSON object")
            frames.append((header, bytes(self._buffer[_SIZES.size + head_len : end])))
            del self._buffer[:end]
        return frames


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP})
"""OS errors that say a path cannot be used as given (too long, through a file...)."""


class _FileRefused(Exception):
    """A file operation the workspace's rules refuse (``reason`` as in ``runtime.agent.files``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def _resolve(path: str) -> str:
    """``path`` with symbolic links followed as this workspace sees them; it must stay in ROOT."""
    real = os.path.realpath(path)
    if not real.startswith(ROOT + "/"):
        raise _FileRefused("outside", real)
    return real


def _read_file(path: str, limit: int) -> bytes:
    real = _resolve(path)
    if not os.path.exists(real):
        raise _FileRefused("missing")
    if os.path.isdir(real):
        raise _FileRefused("is_dir")
    with open(real, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _FileRefused("too_big")
    return data


def _write_file(path: str, data: bytes, mode: int | None) -> None:
    real = _resolve(path)
    if os.path.isdir(real):
        raise _FileRefused("is_dir")
    try:
        os.makedirs(os.path.dirname(real), exist_ok=True)
    except RecursionError:  # makedirs recurses once per missing directory: thousands of components
        raise OSError(errno.ENAMETOOLONG, "the path has too many components") from None
    with open(real, "wb") as handle:
        handle.write(data)
    if mode is not None:
        os.chmod(real, mode)


class _Process:
    """One command: its pipes, what it produced so far, and who waits for it."""

    def __init__(self, key: str, request: dict[str, Any], stdin: bytes, spawned: bool) -> None:
        self.key = key
        self.request_id = request["id"]
        self.spawned = spawned
        self.limit = int(request.get("limit") or _DEFAULT_LIMIT)
        env = dict(os.environ)
        env.update(request.get("env") or {})
        self.started = time.monotonic()
        timeout = request.get("timeout_s")
        self.deadline = self.started + float(timeout) if timeout else None
        self.timed_out = False
        cwd = request.get("cwd") or (ROOT if os.path.isdir(ROOT) else None)
        if cwd is not None and not os.path.isdir(cwd):
            raise _Refused("bad_request", f"cwd {cwd} is not a directory in the workspace")
        # A command given no input and no open stdin reads /dev/null: one pipe fewer to make.
        self.interactive = spawned and bool(request.get("stdin_open"))
        needs_stdin = bool(stdin) or self.interactive
        self.popen = subprocess.Popen(
            list(request["argv"]),
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if needs_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pending_stdin = bytearray(stdin)
        self.close_stdin = not (spawned and request.get("stdin_open"))
        self.output = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = {"stdout": 0, "stderr": 0}
        self.open_streams = 2
        self.unsent = {"stdout": bytearray(), "stderr": bytearray()}  # spawned: output not yet sent
        self.flush_at: float | None = None
        self.rekill_at: float | None = None
        self.rekill_until = 0.0

    def keep(self, stream: str, chunk: bytes) -> None:
        kept = self.output[stream]
        room = max(self.limit - len(kept), 0)
        kept += chunk[:room]
        self.dropped[stream] += max(0, len(chunk) - room)

    def captured(self, stream: str) -> bytes:
        data = bytes(self.output[stream])
        if self.dropped[stream]:
            data += f"\n[output truncated: {self.dropped[stream]} bytes omitted]\n".encode()
        return data

    def signal(self, signum: int) -> None:
        """Signal the whole group; a SIGKILL is repeated until the group is empty."""
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):  # the group has gone
            self.rekill_at = None
            return
        if signum == signal.SIGKILL:
            now = time.monotonic()
            if self.rekill_at is None:
                self.rekill_until = now + _REKILL_FOR_S
            self.rekill_at = now + _REKILL_EVERY_S if now < self.rekill_until else None


class Agent:
    """The agent's event loop: requests from the runtime, output from commands.

    Args:
        rfd: The channel's read end (requests).
        out: The channel's write end (replies and events).
    """

    def __init__(self, rfd: int, out: BinaryIO) -> None:
        self._rfd = rfd
        self._out = out
        self._reader = FrameReader()
        self._selector = selectors.DefaultSelector()
        self._processes: dict[str, _Process] = {}
        self._exiting: list[_Process] = []  # output closed, exit status not yet collected
        self._next = 0
        # The channel stays blocking: reads happen only when select says there is data, and
        # writes must block (back-pressure). Its two ends may be one socket, so setting
        # O_NONBLOCK on the read end would make the write end non-blocking too.
        self._selector.register(rfd, selectors.EVENT_READ, ("control", None))
        # SIGCHLD wakes the loop, so a command is reaped the moment it exits (no polling).
        self._wakeup, wakeup_write = socket.socketpair()
        for end in (self._wakeup, wakeup_write):
            end.setblocking(False)
        self._wakeup_write = wakeup_write
        signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self._selector.register(self._wakeup, selectors.EVENT_READ, ("child", None))

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        """Write one frame (blocking: a slow reader slows the agent down)."""
        self._out.write(encode_frame(header, payload))
        self._out.flush()

    def run(self) -> None:
        """Serve until the channel closes."""
        self.send({"ev": "hello", "pid": os.getpid(), "python": sys.version.split()[0]})
        try:
            while True:
                for key, _ in self._selector.select(self._next_deadline()):
                    kind, process = key.data
                    if kind == "control":
                        if not self._control():
                            return
                    elif kind == "child":
                        with contextlib.suppress(BlockingIOError):
                            self._wakeup.recv(4096)
                    elif kind == "stdin":
                        self._feed_stdin(process)
                    else:
                        self._read_output(process, kind, key.fileobj)  # type: ignore[arg-type]
                self._check_deadlines()
                for process in list(self._exiting):
                    if process.popen.poll() is not None:
                        self._exiting.remove(process)
                        self._finish(process)
        finally:
            for process in self._processes.values():
                process.signal(signal.SIGHUP)

    # ------------------------------------------------------------------ requests

    def _control(self) -> bool:
        try:
            data = os.read(self._rfd, _CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False  # the runtime went away
        for header, payload in self._reader.feed(data):
            try:
                self._request(header, payload)
            except _Refused as exc:
                self.send({"id": header.get("id"), "ok": False, "code": exc.code, "error": str(exc)})
            except _FileRefused as exc:
                self.send({"id": header.get("id"), "ok": False, "code": "refused", "reason": exc.reason,
                           "error": str(exc)})  # fmt: skip
            except OSError as exc:
                code = "bad_request" if exc.errno in _PATH_ERRNOS else "failed"  # the client's path, not a fault
                self.send({"id": header.get("id"), "ok": False, "code": code, "error": str(exc)})
            except (ValueError, KeyError, TypeError) as exc:
                self.send({"id": header.get("id"), "ok": False, "code": "bad_request", "error": repr(exc)})
        return True

    def _request(self, header: dict[str, Any], payload: bytes) -> None:
        op, request_id = header.get("op"), header.get("id")
        if op == "run":
            # Received: from here on the command may run, so the runtime must not run it
            # elsewhere should this agent die before replying.
            self.send({"ack": request_id})
        if op in ("run", "spawn"):
            self._start(header, payload, spawned=op == "spawn")
        elif op == "ping":
            self.send({"id": request_id, "ok": True, "pid": os.getpid()})
        elif op == "read":
            self.send({"id": request_id, "ok": True}, _read_file(str(header["path"]), int(header["limit"])))
        elif op == "write":
            _write_file(str(header["path"]), payload, header.get("mode"))
            self.send({"id": request_id, "ok": True})
        elif op in ("stdin", "kill"):
            process = self._processes.get(str(header.get("key")))
            if process is None or not process.spawned:
                raise _Refused("not_found", f"process {header.get('key')} is not running")
            if op == "kill":
                process.signal(int(header.get("signal") or signal.SIGTERM))
            else:
                self._write_stdin(process, payload, bool(header.get("close")))
            self.send({"id": request_id, "ok": True})
        else:
            raise _Refused("bad_request", f"unknown op {op!r}")

    # ------------------------------------------------------------------ commands

    def _start(self, header: dict[str, Any], stdin: bytes, *, spawned: bool) -> None:
        if spawned:
            key = str(header["key"])
            if key in self._processes:
                raise _Refused("conflict", f"process {key} exists")
        else:
            self._next += 1
            key = f"run-{self._next}"
        try:
            process = _Process(key, header, stdin, spawned)
        except OSError as exc:
            exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
            message = f"{header['argv'][0]}: {'command not found' if exit_code == 127 else exc.strerror}\n"
            if spawned:
                raise _Refused("bad_request", message.strip()) from None
            result = {"exit_code": exit_code, "timed_out": False, "duration_ms": 0.0, "stdout_len": 0}
            self.send({"id": header["id"], "ok": True, **result}, message.encode())
            return
        self._processes[key] = process
        popen = process.popen
        assert popen.stdout is not None and popen.stderr is not None
        for stream, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self._selector.register(pipe, selectors.EVENT_READ, (stream, process))
        if spawned:
            self.send({"id": header["id"], "ok": True, "pid": popen.pid})
        if popen.stdin is not None:
            os.set_blocking(popen.stdin.fileno(), False)
            self._write_stdin(process, b"", process.close_stdin)

    def _write_stdin(self, process: _Process, data: bytes, close: bool) -> None:
        pipe = process.popen.stdin
        if pipe is None or pipe.closed:
            if data:
                raise _Refused("conflict", f"the standard input of process {process.key} is closed")
            return
        process.pending_stdin += data
        process.close_stdin = process.close_stdin or close
        self._feed_stdin(process)

    def _feed_stdin(self, process: _Process) -> None:
        pipe = process.popen.stdin
        if pipe is None or pipe.closed:
            return
        try:
            while process.pending_stdin:
                written = os.write(pipe.fileno(), process.pending_stdin[:_CHUNK])
                del process.pending_stdin[:written]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the command stopped reading: what is left has nowhere to go
            process.pending_stdin.clear()
            process.close_stdin = True
        registered = self._registered(pipe)
        if process.pending_stdin and not registered:
            self._selector.register(pipe, selectors.EVENT_WRITE, ("stdin", process))
        elif not process.pending_stdin:
            if registered:
                self._selector.unregister(pipe)
            if process.close_stdin:
                pipe.close()

    def _registered(self, fileobj: Any) -> bool:
        try:
            self._selector.get_key(fileobj)
        except KeyError:
            return False
        return True

    def _read_output(self, process: _Process, stream: str, pipe: BinaryIO) -> None:
        try:
            chunk = os.read(pipe.fileno(), _CHUNK)
        except BlockingIOError:
            return
        if chunk:
            if process.spawned:
                unsent = process.unsent[stream]
                unsent += chunk
                if len(unsent) >= _CHUNK or (process.interactive and unsent.endswith(b"\n")):
                    self._flush(process, stream)
                elif process.flush_at is None:
                    process.flush_at = time.monotonic() + _COALESCE_S
            else:
                process.keep(stream, chunk)
            return
        self._selector.unregister(pipe)
        pipe.close()
        self._flush(process, stream)
        process.open_streams -= 1
        if process.open_streams == 0:
            if process.popen.poll() is None:
                self._exiting.append(process)  # it closed its output but runs on: never block on it
            else:
                self._finish(process)

    def _flush(self, process: _Process, *streams: str) -> None:
        for stream in streams or ("stdout", "stderr"):
            unsent = process.unsent[stream]
            if unsent:
                self.send({"ev": "out", "key": process.key, "stream": stream}, bytes(unsent))
                unsent.clear()
        if not any(process.unsent.values()):
            process.flush_at = None

    def _finish(self, process: _Process) -> None:
        code = process.popen.wait()
        stdin = process.popen.stdin
        if stdin is not None and not stdin.closed:
            if self._registered(stdin):
                self._selector.unregister(stdin)
            stdin.close()
        del self._processes[process.key]
        result = {
            "exit_code": code if code >= 0 else 128 - code,
            "timed_out": process.timed_out,
            "duration_ms": round((time.monotonic() - process.started) * 1000, 3),
        }
        if process.spawned:
            self._flush(process)
            self.send({"ev": "exit", "key": process.key, **result})
        else:
            stdout, stderr = process.captured("stdout"), process.captured("stderr")
            self.send({"id": process.request_id, "ok": True, "stdout_len": len(stdout), **result}, stdout + stderr)

    def _next_deadline(self) -> float | None:
        now = time.monotonic()
        deadlines = [
            max(p.deadline + _GRACE_S, now + 0.02) if p.timed_out else p.deadline
            for p in self._processes.values()
            if p.deadline is not None
        ]
        deadlines += [p.flush_at for p in self._processes.values() if p.flush_at is not None]
        deadlines += [p.rekill_at for p in self._processes.values() if p.rekill_at is not None]
        if self._exiting:
            deadlines.append(now + 1.0)  # SIGCHLD wakes the loop; this is a safety net
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for process in list(self._processes.values()):
            if process.flush_at is not None and now >= process.flush_at:
                self._flush(process)
            if process.rekill_at is not None and now >= process.rekill_at:
                process.signal(signal.SIGKILL)
            if process.deadline is None or now < process.deadline:
                continue
            if not process.timed_out:
                process.timed_out = True
                process.signal(signal.SIGKILL)
            elif now >= process.deadline + _GRACE_S and process.popen.poll() is not None:
                # Something it started left its session and holds the pipes: stop waiting for them.
                for pipe in (process.popen.stdout, process.popen.stderr):
                    if pipe is not None and not pipe.closed:
                        self._selector.unregister(pipe)
                        pipe.close()
                self._finish(process)


def _end_stale_agents() -> None:
    """Ask any other agent in this workspace to stop (SIGTERM).

    The runtime starts an agent only when it has lost the previous one's channel; an agent
    whose channel was cut without closing its stdin (the Docker daemon restarted) would
    otherwise live on, holding memory and its commands.
    """
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue  # it has gone, or is not ours to read
        if NAME.encode() in args and b"-c" in args:
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGTERM)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # unwinds through Agent.run, which hangs up its commands


def main() -> None:
    """Serve the runtime on stdin/stdout until stdin closes (or SIGTERM)."""
    signal.signal(signal.SIGTERM, _stop)
    if EXCLUSIVE in sys.argv:
        _end_stale_agents()
    os.chdir(ROOT if os.path.isdir(ROOT) else "/")
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):  # the runtime went away
        Agent(sys.stdin.fileno(), sys.stdout.buffer).run()


if __name__ in ("__main__", "aw_agent"):
    main()
