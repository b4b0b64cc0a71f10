"""Commands in a stand-in sandbox, run and reported the way envd runs and reports them.

envd starts ``/bin/bash -l -c CMD`` as the requested user in the requested directory (the
user's home by default), with ``USER``/``LOGNAME`` set and the request's ``envs`` on top of
the sandbox's, stdin a pipe only when asked (else ``/dev/null``), and streams ``start``,
``data`` and ``end`` events. Here each command is a ``docker exec`` of a small ``sh``
wrapper that reports the command's pid (its pid inside the container: the wrapper ``exec``s
bash), leaves a record for ``list()``/``kill()`` in ``RECORDS_DIR`` and ``exec``s bash; its
output is read as it comes and handed out as the SDK's own protobuf events, so the SDK's
``CommandHandle`` decodes, accumulates and raises exactly as against envd.

Exit codes follow envd (Go's ``ProcessState``): 0, or N with the error ``exit status N``; a
command killed by SIGKILL (``commands.kill``, or its ``timeout`` passing: envd starts the
process under that deadline and kills it then) ends with ``-1`` and the error
``signal: killed``. Errors are raised as the ``ConnectError`` envd would answer, for the
caller to map with the SDK's own mapping.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Generator, Mapping
from typing import IO, Any, cast

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.process import process_pb
from e2b.sandbox.commands.main import ProcessInfo
from protobuf import Oneof

from tests.e2b_standin.containers import DEFAULT_USER, RECORDS_DIR, SandboxContainer

__all__ = ["Process", "event_stream", "kill_process", "list_processes", "local_process", "start_process"]

# $1 the command, $2 the cwd as given, $3 the record for list(). The cwd is resolved as
# envd resolves it (empty or ~ is the home, relative is under the home) and must exist.
_WRAPPER = f"""
case "$2" in
  "" | "~") dir=$HOME ;;
  "~/"*) dir=$HOME/${{2#\\~/}} ;;
  /*) dir=$2 ;;
  *) dir=$HOME/$2 ;;
esac
if [ ! -e "$dir" ] || ! cd -- "$dir" 2>/dev/null; then echo "nocwd $dir"; exit 0; fi
echo "pid $$"
printf '%s' "$3" > "{RECORDS_DIR}/$$" 2>/dev/null
exec /bin/bash -l -c "$1"
"""
# A pid is killable only if it is a live command with a record, as envd only signals its own.
_KILL = f'f={RECORDS_DIR}/$1; [ -f "$f" ] && [ -d "/proc/$1" ] && touch "$f.killed" && kill -9 "$1"'
_LIST = f"""
cd {RECORDS_DIR} 2>/dev/null || exit 0
for f in *; do
  case "$f" in ''|*[!0-9]*) continue ;; esac
  if [ -d "/proc/$f" ]; then printf '%s\\t%s\\n' "$f" "$(cat "$f")"; else rm -f "$f" "$f.killed"; fi
done
"""
_CHUNK = 32 << 10  # envd reads 32 KiB at a time
_LIVENESS_S = 1.0  # how often a quiet stream checks that its sandbox still runs

_local: dict[tuple[str, int], Process] = {}
_local_lock = threading.Lock()


def local_process(sandbox_id: str, pid: int) -> Process | None:
    """The running command ``pid`` of the sandbox, if it was started through this Python process."""
    with _local_lock:
        return _local.get((sandbox_id, pid))


class Process:
    """A command started through this Python process: its ``docker exec``, output feed and end."""

    def __init__(self, target: SandboxContainer, container_id: str, pid: int, popen: subprocess.Popen[bytes]) -> None:
        self.target, self.container_id, self.pid, self._popen = target, container_id, pid, popen
        self.stdin: IO[bytes] | None = popen.stdin
        self._stdin_lock = threading.Lock()  # envd's stdinMu: writes, the close and the end do not interleave
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[tuple[str, Any]]] = []
        self._ended = False
        self._killed = False
        self._timer: threading.Timer | None = None

    def subscribe(self) -> queue.Queue[tuple[str, Any]] | None:
        """A queue of the events from now on (``None`` once the command has ended)."""
        with self._lock:
            if self._ended:
                return None
            feed: queue.Queue[tuple[str, Any]] = queue.Queue()
            self._subscribers.append(feed)
            return feed

    def unsubscribe(self, feed: queue.Queue[tuple[str, Any]]) -> None:
        with self._lock:
            if feed in self._subscribers:
                self._subscribers.remove(feed)

    def _publish(self, kind: str, value: Any) -> None:
        with self._lock:
            for feed in self._subscribers:
                feed.put((kind, value))

    def begin(self, timeout: float | None) -> None:
        """Read the output, wait for the end, and kill the command when ``timeout`` passes."""
        assert self._popen.stdout is not None and self._popen.stderr is not None
        readers = [
            threading.Thread(target=self._pump, args=(kind, stream), daemon=True)
            for kind, stream in (("stdout", self._popen.stdout), ("stderr", self._popen.stderr))
        ]
        for reader in readers:
            reader.start()
        threading.Thread(target=self._wait, args=(readers,), daemon=True).start()
        if timeout:
            self._timer = threading.Timer(timeout, self.kill)
            self._timer.daemon = True
            self._timer.start()

    def _pump(self, kind: str, stream: IO[bytes]) -> None:
        while chunk := stream.read1(_CHUNK):  # type: ignore[attr-defined]
            self._publish(kind, chunk)

    def _wait(self, readers: list[threading.Thread]) -> None:
        for reader in readers:
            reader.join()
        code = self._popen.wait()
        with self._stdin_lock:
            for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._timer is not None:
            self._timer.cancel()
        with _local_lock:
            _local.pop((self.target.sandbox_id, self.pid), None)
        if code != 0 and (self._killed or (code == 137 and self._killed_elsewhere())):
            end = process_pb.ProcessEvent.EndEvent(
                exit_code=-1, exited=False, status="signal: killed", error="signal: killed"
            )
        elif code != 0 and self.target.state() != "running":
            # The container went away (killed, timed out) or froze under the command.
            self._finish("gone", self.target.gone_message)
            return
        elif code == 0:
            end = process_pb.ProcessEvent.EndEvent(exit_code=0, exited=True, status="exit status 0")
        else:
            end = process_pb.ProcessEvent.EndEvent(
                exit_code=code, exited=True, status=f"exit status {code}", error=f"exit status {code}"
            )
        self._finish("end", end)

    def _finish(self, kind: str, value: Any) -> None:
        with self._lock:
            self._ended = True
            for feed in self._subscribers:
                feed.put((kind, value))

    def _killed_elsewhere(self) -> bool:
        # Another Python process's kill() left a marker before its SIGKILL.
        check = self.target.run(self.container_id, ["test", "-e", f"{RECORDS_DIR}/{self.pid}.killed"])
        return check.returncode == 0

    def kill(self) -> bool:
        """SIGKILL the command (envd's kill); its stream ends at once, as envd stops reading then."""
        self._killed = True
        killed = self.target.run(self.container_id, ["/bin/sh", "-c", _KILL, "sh", str(self.pid)]).returncode == 0
        if killed:
            # Children may hold the output pipes open; envd stops reading at a kill, so do we.
            self._popen.kill()
        else:
            self._killed = False
        return killed

    def write_stdin(self, data: bytes) -> None:
        with self._stdin_lock:
            if self.stdin is None or self.stdin.closed:
                raise ConnectError(Code.INTERNAL, "error writing to stdin: stdin not enabled or closed")
            try:
                self.stdin.write(data)
                self.stdin.flush()
            except (OSError, ValueError) as exc:
                raise ConnectError(Code.INTERNAL, f"error writing to stdin of process '{self.pid}': {exc}") from exc

    def close_stdin(self) -> None:
        with self._stdin_lock:
            if self.stdin is not None and not self.stdin.closed:
                with contextlib.suppress(OSError):
                    self.stdin.close()  # the docker CLI passes the EOF on to the command


def _read_header(stream: IO[bytes]) -> bytes:
    line = bytearray()
    while (byte := stream.read(1)) and byte != b"\n":
        line += byte
    return bytes(line)


def start_process(
    target: SandboxContainer,
    cmd: str,
    envs: Mapping[str, str] | None,
    user: str | None,
    cwd: str | None,
    stdin: bool,
    timeout: float | None,
) -> tuple[Process, queue.Queue[tuple[str, Any]]]:
    """Start ``cmd`` as envd does; return it and the feed of its events (raises ``ConnectError``)."""
    container_id = target.running_id()
    if container_id is None:
        raise ConnectError(Code.UNAVAILABLE, target.gone_message)
    username = user or DEFAULT_USER
    record = json.dumps({"cmd": "/bin/bash", "args": ["-l", "-c", cmd], "envs": dict(envs or {}), "cwd": cwd})
    argv = target.exec_argv(
        container_id,
        ["/bin/sh", "-c", _WRAPPER, "sh", cmd, cwd or "", record],
        user=username,
        env={"USER": username, "LOGNAME": username, **(envs or {})},
        interactive=stdin,
    )
    popen = subprocess.Popen(
        argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert popen.stdout is not None and popen.stderr is not None
    header = _read_header(popen.stdout)
    if not header.startswith(b"pid "):
        # The docker CLI reports exec failures (e.g. an unknown user) on stdout or stderr.
        error = (header + b"\n" + popen.stderr.read()).decode(errors="replace").strip()
        popen.communicate()  # waits, and closes the pipes
        if header.startswith(b"nocwd "):
            raise ConnectError(Code.INVALID_ARGUMENT, f"cwd '{header[6:].decode()}' does not exist")
        if "unable to find user" in error:
            raise ConnectError(Code.UNAUTHENTICATED, f"invalid username: '{username}'")
        if target.state() != "running":
            raise ConnectError(Code.UNAVAILABLE, target.gone_message)
        raise ConnectError(Code.UNKNOWN, f"error starting process: {error}")
    process = Process(target, container_id, int(header[4:]), popen)
    feed = process.subscribe()
    assert feed is not None
    with _local_lock:
        _local[(target.sandbox_id, process.pid)] = process
    process.begin(timeout or None)
    return process, feed


def _event(name: str, value: Any) -> process_pb.ProcessEvent:
    """A process event whose ``event`` oneof is ``name`` (start, data or end)."""
    return process_pb.ProcessEvent(event=cast(Any, Oneof(name, value)))


def event_stream(
    process: Process,
    feed: queue.Queue[tuple[str, Any]],
    timeout: float | None,
    response: type[process_pb.StartResponse] | type[process_pb.ConnectResponse],
) -> Generator[Any, None, None]:
    """The events of ``process`` as envd streams them, until its end or the stream's ``timeout``."""
    deadline = None if not timeout else time.monotonic() + timeout
    try:
        yield response(event=_event("start", process_pb.ProcessEvent.StartEvent(pid=process.pid)))
        while True:
            wait = _LIVENESS_S if deadline is None else min(_LIVENESS_S, deadline - time.monotonic())
            if wait <= 0:
                # The client's deadline, as connectrpc raises it.
                raise ConnectError(Code.DEADLINE_EXCEEDED, "Request timed out") from TimeoutError()
            try:
                kind, value = feed.get(timeout=wait)
            except queue.Empty:
                if process.target.state() != "running":
                    raise ConnectError(Code.UNAVAILABLE, process.target.gone_message) from None
                continue
            if kind == "end":
                yield response(event=_event("end", value))
                return
            if kind == "gone":
                raise ConnectError(Code.UNAVAILABLE, value)
            yield response(
                event=_event("data", process_pb.ProcessEvent.DataEvent(output=cast(Any, Oneof(kind, value))))
            )
    finally:
        process.unsubscribe(feed)


def kill_process(target: SandboxContainer, pid: int) -> bool:
    """SIGKILL a command of the sandbox: ``False`` if there is no such command (raises ``ConnectError``)."""
    container_id = target.running_id()
    if container_id is None:
        raise ConnectError(Code.UNAVAILABLE, target.gone_message)
    process = local_process(target.sandbox_id, pid)
    if process is not None:
        return process.kill()
    return target.run(container_id, ["/bin/sh", "-c", _KILL, "sh", str(pid)]).returncode == 0


def list_processes(target: SandboxContainer) -> list[ProcessInfo]:
    """The commands running in the sandbox, whoever started them (raises ``ConnectError``)."""
    container_id = target.running_id()
    if container_id is None:
        raise ConnectError(Code.UNAVAILABLE, target.gone_message)
    listed = target.run(container_id, ["/bin/sh", "-c", _LIST])
    found = []
    for line in listed.stdout.decode(errors="replace").splitlines():
        pid, _, raw = line.partition("\t")
        record = json.loads(raw)
        found.append(
            ProcessInfo(
                pid=int(pid), tag=None, cmd=record["cmd"], args=record["args"], envs=record["envs"], cwd=record["cwd"]
            )
        )
    return sorted(found, key=lambda info: info.pid)
