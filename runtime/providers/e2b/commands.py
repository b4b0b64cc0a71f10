"""What runs inside E2B sandboxes: commands, streamed processes and files, through the SDK.

- ``exec`` starts ``/bin/bash -l -c`` with the shell-quoted argv through
  ``commands.run(background=True)`` and waits for it; a non-zero exit is a result
  (``CommandExitException`` is caught), a timeout is enforced inside the sandbox by
  ``timeout -s KILL`` (the whole process group, as on the other providers) and by the
  SDK's stream deadline a little later, and reported as ``timed_out``.
- ``spawn`` is the same start with a thread waiting on the handle, passing each chunk
  to the sink as it arrives (``on_stdout``/``on_stderr``); ``write_stdin`` is
  ``send_stdin``/``close_stdin``; ``kill`` is the SDK's ``kill`` for SIGKILL and a
  ``kill -SIG`` command for the other signals (the SDK only sends SIGKILL).
- Files: ``/workspace`` is ``/workspace`` inside the sandbox (made at create, owned by
  root like everything a command makes: commands run as ``root``, as in the Docker
  workspaces). The path rules are ``runtime.agent.files``' own: checked as given, then
  resolved inside the sandbox (``realpath -m``, symbolic links as the sandbox sees them);
  the bytes then move with ``files.read``/``files.write``.

E2B's command output is text: the SDK decodes it as UTF-8 (invalid bytes become U+FFFD)
before the adapter sees it, so ``exec`` output is the UTF-8 of that text. Files move as
bytes, unchanged.
"""

from __future__ import annotations

import shlex
import signal as signals
import threading
import time
from collections.abc import Callable
from typing import Any

from e2b import CommandExitException, Sandbox, TimeoutException

from runtime.agent.files import MAX_FILE_BYTES, REASONS, WORKSPACE_ROOT, refusal, workspace_path
from runtime.errors import BadRequest, WorkspaceError
from runtime.messages import Command, ExecResult
from runtime.providers.base import ProcessSink
from runtime.providers.e2b.api import E2BApi
from runtime.providers.e2b.errors import sandbox_gone, sandbox_stopped, translated

__all__ = ["USER", "E2BCommands"]

USER = "root"
_SLACK_S = 5.0  # the SDK's deadline comes this long after the in-sandbox `timeout` should have fired
_OUTSIDE, _MISSING, _IS_DIR, _TOO_BIG = 43, 44, 46, 45
# Resolve a path as the sandbox sees it and say what is there: "<resolved>\n<kind> <size>".
_RESOLVE = f"""p=$(realpath -m -- "$1") || exit 42
case "$p" in {WORKSPACE_ROOT}/*) ;; *) echo "$p" >&2; exit {_OUTSIDE};; esac
if [ "$2" = read ]; then
  [ -e "$p" ] || exit {_MISSING}
  [ -d "$p" ] && exit {_IS_DIR}
  [ "$(stat -c %s -- "$p")" -le {MAX_FILE_BYTES} ] || exit {_TOO_BIG}
else
  [ -d "$p" ] && exit {_IS_DIR}
  mkdir -p -- "$(dirname -- "$p")" || exit 42
fi
printf '%s' "$p"
"""


# envd reports a command killed by a signal as exit -1 with Go's "signal: <name>"; the
# protocol says 128 + the signal, as the other providers do.
_GO_SIGNALS = {
    "hangup": 1, "interrupt": 2, "quit": 3, "illegal instruction": 4, "trace/breakpoint trap": 5, "aborted": 6,
    "bus error": 7, "floating point exception": 8, "killed": 9, "user defined signal 1": 10,
    "segmentation fault": 11, "user defined signal 2": 12, "broken pipe": 13, "alarm clock": 14, "terminated": 15,
}  # fmt: skip


def _exit_code(exc: CommandExitException) -> int:
    """The protocol's exit code for a command that ended with ``exc`` (128 + n when signal n killed it)."""
    code = int(exc.exit_code)
    error = str(exc.error or "")
    if code < 0 and error.startswith("signal: "):
        number = _GO_SIGNALS.get(error.removeprefix("signal: ").removesuffix(" (core dumped)"))
        if number is not None:
            return 128 + number
    return code


class _Process:
    """A spawned process: its SDK handle and sandbox."""

    def __init__(self, sandbox: Sandbox, handle: Any) -> None:
        self.sandbox = sandbox
        self.handle = handle
        self.pid = int(handle.pid)


class E2BCommands:
    """The ``Commands`` of the E2B provider.

    Args:
        api: The control plane (connects to a sandbox the adapter has not seen yet).
        gone: Called with the handle of a sandbox E2B no longer knows (the provider
            reports it as an event, so its workspace is marked ``failed`` at once).
    """

    def __init__(self, api: E2BApi, gone: Callable[[str, str], None]) -> None:
        self._api = api
        self._gone = gone
        self._lock = threading.Lock()
        self._sandboxes: dict[str, Sandbox] = {}
        self._processes: dict[tuple[str, str], _Process] = {}

    # ------------------------------------------------------------------ sandboxes

    def remember(self, handle: str, sandbox: Sandbox) -> None:
        """Keep the sandbox object a create returned (no connect needed to use it)."""
        with self._lock:
            self._sandboxes[handle] = sandbox

    def forget(self, handle: str) -> None:
        """Drop what is known about a sandbox that is going away."""
        with self._lock:
            self._sandboxes.pop(handle, None)
            keys = [key for key in self._processes if key[0] == handle]
            for key in keys:
                del self._processes[key]

    def _sandbox(self, handle: str) -> Sandbox:
        with self._lock:
            sandbox = self._sandboxes.get(handle)
        if sandbox is None:  # first use since the runtime started: connect (resumes a paused one)
            sandbox = self._guarded(handle, "connecting", lambda: self._api.connect(handle))
            with self._lock:
                sandbox = self._sandboxes.setdefault(handle, sandbox)
        return sandbox

    def _guarded(self, handle: str, what: str, call: Callable[[], Any]) -> Any:
        """Run an SDK call for ``handle``, translated; a vanished sandbox is reported."""
        try:
            with translated(f"{what} in sandbox {handle}"):
                return call()
        except WorkspaceError as exc:
            if sandbox_gone(exc):
                self.forget(handle)
                self._gone(handle, exc.message)
            elif sandbox_stopped(exc):
                with self._lock:
                    self._sandboxes.pop(handle, None)
                try:  # connecting resumes a paused sandbox (the call may be retried) or finds it gone
                    self._sandbox(handle)
                except WorkspaceError as again:
                    if sandbox_gone(again):
                        raise again from None
            raise

    # ------------------------------------------------------------------ commands

    @staticmethod
    def _shell(command: Command) -> str:
        line = shlex.join(command.argv)
        if command.timeout_s is not None:  # the whole process group, as on the other providers
            line = f"exec timeout -s KILL {command.timeout_s:.3f} {line}"
        return line

    def _start(self, handle: str, command: Command, stdin: bool) -> tuple[Sandbox, Any]:
        sandbox = self._sandbox(handle)
        deadline = None if command.timeout_s is None else command.timeout_s + _SLACK_S

        def start() -> Any:
            return sandbox.commands.run(
                self._shell(command),
                background=True,
                envs=dict(command.env),
                user=USER,
                cwd=command.cwd or WORKSPACE_ROOT,
                stdin=stdin,
                timeout=deadline or 0,  # 0: no deadline (the SDK's default is 60 s)
            )

        proc = self._guarded(handle, "starting a command", start)
        return sandbox, proc

    def _feed(self, handle: str, sandbox: Sandbox, pid: int, data: bytes | None, close: bool) -> None:
        def feed() -> None:
            if data:
                sandbox.commands.send_stdin(pid, data)
            if close:
                sandbox.commands.close_stdin(pid)

        self._guarded(handle, "writing to a command's stdin", feed)

    def exec(self, handle: str, command: Command) -> ExecResult:
        """Run ``command`` and wait for it; see the module's notes."""
        started = time.monotonic()
        sandbox, proc = self._start(handle, command, stdin=command.stdin is not None)
        if command.stdin is not None:
            self._feed(handle, sandbox, int(proc.pid), command.stdin, close=True)
        out, err = _Capture(command.output_limit), _Capture(command.output_limit)

        def wait() -> tuple[int, bool]:
            return self._wait(sandbox, proc, command, out.add, err.add)

        exit_code, timed_out = self._guarded(handle, "waiting for a command", wait)
        elapsed = time.monotonic() - started
        timed_out = timed_out or _killed_at_timeout(command, exit_code, elapsed)
        return ExecResult(
            exit_code=exit_code,
            stdout=out.result(),
            stderr=err.result(),
            timed_out=timed_out,
            duration_ms=elapsed * 1000.0,
            via="e2b",
        )

    def _wait(
        self,
        sandbox: Sandbox,
        proc: Any,
        command: Command,
        on_stdout: Callable[[str], None],
        on_stderr: Callable[[str], None],
    ) -> tuple[int, bool]:
        """Wait for a started command: its exit code (128 + n when signal n ended it), and whether it timed out.

        Raises the SDK's exception when the sandbox, not the command, stopped answering.
        """
        try:
            proc.wait(on_stdout=on_stdout, on_stderr=on_stderr)
        except CommandExitException as exc:  # a non-zero exit is a result
            return _exit_code(exc), False
        except TimeoutException as exc:
            if type(exc) is not TimeoutException or command.timeout_s is None:
                raise  # (its subclasses say the sandbox stopped or cannot be reached)
            self._kill_quietly(sandbox, int(proc.pid))
            return 137, True
        return 0, False

    @staticmethod
    def _kill_quietly(sandbox: Sandbox, pid: int) -> None:
        try:
            sandbox.commands.kill(pid)
        except Exception:
            return

    def spawn(self, handle: str, key: str, command: Command, sink: ProcessSink) -> int:
        """Start ``command`` as process ``key``; a thread passes its output and end to ``sink``."""
        started = time.monotonic()
        sandbox, proc = self._start(handle, command, stdin=command.stdin_open or command.stdin is not None)
        process = _Process(sandbox, proc)
        with self._lock:
            self._processes[(handle, key)] = process
        if command.stdin is not None:
            self._feed(handle, sandbox, process.pid, command.stdin, close=not command.stdin_open)

        def follow() -> None:
            exit_code: int | None
            error = None
            try:
                exit_code, timed_out = self._wait(
                    sandbox, proc, command, lambda text: sink.output("stdout", text.encode()),
                    lambda text: sink.output("stderr", text.encode()),
                )  # fmt: skip
            except Exception as exc:  # the sandbox or the stream went: the process is lost to us
                exit_code, timed_out, error = None, False, f"lost the E2B command stream: {type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - started
            timed_out = timed_out or (exit_code is not None and _killed_at_timeout(command, exit_code, elapsed))
            with self._lock:
                self._processes.pop((handle, key), None)
            sink.exited(exit_code, timed_out, elapsed * 1000.0, error)

        threading.Thread(target=follow, name=f"e2b-process-{key}", daemon=True).start()
        return process.pid

    def _process(self, handle: str, key: str) -> _Process:
        with self._lock:
            process = self._processes.get((handle, key))
        if process is None:
            raise BadRequest(f"process {key} is not running")
        return process

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        """Feed a spawned process's stdin (``send_stdin``), ``close_stdin`` when ``close``."""
        process = self._process(handle, key)
        self._feed(handle, process.sandbox, process.pid, data, close)

    def kill(self, handle: str, key: str, signal: int) -> None:
        """Signal a spawned process: SIGKILL through the SDK, others by a ``kill`` command."""
        process = self._process(handle, key)
        commands = process.sandbox.commands
        if signal == signals.SIGKILL:
            self._guarded(handle, "killing a command", lambda: commands.kill(process.pid))
            return
        line = f"kill -{int(signal)} -- -{process.pid} 2>/dev/null || kill -{int(signal)} {process.pid}"

        def signal_it() -> None:
            try:
                commands.run(line, user=USER, timeout=30)
            except CommandExitException:
                return  # it ended meanwhile: not an error

        self._guarded(handle, "signalling a command", signal_it)

    def cancel(self, handle: str) -> None:
        """Kill every process the runtime spawned in the sandbox (it is going away)."""
        with self._lock:
            processes = [process for key, process in self._processes.items() if key[0] == handle]
        for process in processes:
            self._kill_quietly(process.sandbox, process.pid)

    def close(self) -> None:
        """Stop following spawned processes; they and the sandboxes keep running."""
        with self._lock:
            processes = list(self._processes.values())
            self._processes.clear()
            self._sandboxes.clear()
        for process in processes:
            try:
                process.handle.disconnect()
            except Exception:
                continue

    # ------------------------------------------------------------------ files

    def _resolve(self, handle: str, path: str, purpose: str) -> str:
        full = workspace_path(path)
        sandbox = self._sandbox(handle)
        argv = ["sh", "-c", _RESOLVE, "sh", full, purpose]

        def resolve() -> str:
            try:
                result = sandbox.commands.run(shlex.join(argv), user=USER, cwd="/", timeout=60)
            except CommandExitException as exc:
                reason = REASONS.get(int(exc.exit_code))
                detail = str(exc.stderr).strip()
                raise refusal(full, reason, detail) if reason else WorkspaceError(f"{full}: {detail}") from None
            return str(result.stdout)

        resolved: str = self._guarded(handle, "resolving a path", resolve)
        return resolved

    def read_file(self, handle: str, path: str) -> bytes:
        """A file's bytes (``files.read``), after the path rules."""
        resolved = self._resolve(handle, path, "read")
        sandbox = self._sandbox(handle)
        data = self._guarded(handle, f"reading {path}", lambda: sandbox.files.read(resolved, format="bytes", user=USER))
        return bytes(data)

    def write_file(self, handle: str, path: str, data: bytes, mode: int | None) -> None:
        """Write a file (``files.write``), after the path rules; ``chmod`` it to ``mode``."""
        resolved = self._resolve(handle, path, "write")
        sandbox = self._sandbox(handle)
        self._guarded(handle, f"writing {path}", lambda: sandbox.files.write(resolved, data, user=USER))
        if mode is not None:
            line = shlex.join(["chmod", format(mode, "o"), "--", resolved])
            self._guarded(handle, f"changing the mode of {path}", lambda: sandbox.commands.run(line, user=USER))


def _killed_at_timeout(command: Command, exit_code: int, elapsed_s: float) -> bool:
    """Whether the in-sandbox ``timeout -s KILL`` ended the command (137, at or after its timeout)."""
    return command.timeout_s is not None and exit_code == 137 and elapsed_s >= command.timeout_s


class _Capture:
    """One output stream of ``exec``: its first ``limit`` bytes, and how many were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, text: str) -> None:
        chunk = text.encode()
        room = max(0, self.limit - len(self.data))
        self.data += chunk[:room]
        self.dropped += len(chunk) - min(room, len(chunk))

    def result(self) -> bytes:
        if not self.dropped:  # the same line as the other providers'
            return bytes(self.data)
        return bytes(self.data) + f"\n[output truncated: {self.dropped} bytes omitted]\n".encode()
