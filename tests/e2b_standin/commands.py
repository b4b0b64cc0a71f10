# ruff: noqa: UP006, UP007, UP035, UP045
# (The overrides spell their annotations as the SDK does, with typing's Optional, Dict, List...:
# typing.Dict[str, str] != dict[str, str], and the signatures must equal the SDK's, annotations too.)
"""``sandbox.commands`` of a stand-in sandbox: the SDK's ``Commands``, run in the sandbox's container.

``StandInCommands`` is an instance of the SDK's ``Commands`` whose public methods have the
SDK's exact signatures but run the command through ``tests.e2b_standin.processes`` instead
of envd's RPC. Handles are the SDK's own ``CommandHandle`` (``StandInCommandHandle`` adds
nothing) fed with the protobuf events envd would stream, and errors go through the SDK's
own ``handle_rpc_exception``: so waiting, decoding, ``CommandExitException``,
``TimeoutException`` and the exceptions for a sandbox that is gone (killed, timed out,
paused: ``SandboxNotRunningException``) are the SDK's.

The stdin and the output of a command are reachable from the Python process that started
it only (``connect``, ``send_stdin``, ``close_stdin``); ``list`` and ``kill`` reach every
command of the sandbox, from any process.
"""

from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Union, cast

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.connection_config import STREAM_INPUT_TIMEOUT, ConnectionConfig, Username
from e2b.envd.process import process_pb
from e2b.envd.rpc import handle_rpc_exception
from e2b.envd.utils import extract_start_pid
from e2b.envd.versions import ENVD_COMMANDS_STDIN, ENVD_ENVD_CLOSE
from e2b.exceptions import InvalidArgumentException, SandboxException
from e2b.sandbox.commands.main import ProcessInfo
from e2b.sandbox_sync.commands.command import Commands
from e2b.sandbox_sync.commands.command_handle import CommandHandle
from packaging.version import Version

from tests.e2b_standin.containers import SandboxContainer
from tests.e2b_standin.processes import (
    event_stream,
    kill_process,
    list_processes,
    local_process,
    start_process,
)

__all__ = ["StandInCommandHandle", "StandInCommands", "Unserved"]


class Unserved:
    """Stands where the SDK keeps an envd client the stand-in does not serve: any use says so."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"the E2B stand-in does not serve {self._what}.{name}")


class StandInCommandHandle(CommandHandle):
    """The SDK's ``CommandHandle``, over the stand-in's events: every method is the SDK's."""


class StandInCommands(Commands):
    """The SDK's ``Commands`` with its public methods run in the stand-in sandbox's container."""

    def __init__(self, target: SandboxContainer, envd_version: Version, connection_config: ConnectionConfig) -> None:
        # Not the SDK's __init__: it builds RPC clients for an envd host that does not exist here.
        self._target = target
        self._envd_version = envd_version
        self._connection_config = connection_config
        self._rpc = cast(Any, Unserved("envd's process service"))
        self._envd_api = cast(Any, Unserved("envd's HTTP API"))
        self._envd_health_api = cast(Any, Unserved("envd's health probe"))

    def _standin_error(self, error: ConnectError) -> Exception:
        mapped: Exception = handle_rpc_exception(error)
        return mapped

    def _standin_not_here(self, pid: int) -> Exception:
        """What to raise for a pid this Python process did not start (or that has ended)."""
        try:
            running = any(info.pid == pid for info in list_processes(self._target))
        except ConnectError as error:
            return self._standin_error(error)
        if running:
            return SandboxException(
                f"the E2B stand-in reaches the stdin and output of command {pid} only from the process that started it"
            )
        return self._standin_error(ConnectError(Code.NOT_FOUND, f"process with pid {pid} not found"))

    def _standin_handle(self, events: Generator[Any, None, None], action: str, retain_output: bool) -> Any:
        try:
            pid = extract_start_pid(next(events), action)
        except Exception as error:
            events.close()
            raise handle_rpc_exception(error) from None

        def send_stdin(data: Union[str, bytes], request_timeout: Optional[float] = None) -> None:
            self.send_stdin(pid, data, request_timeout)

        def close_stdin(request_timeout: Optional[float] = None) -> None:
            self.close_stdin(pid, request_timeout)

        return StandInCommandHandle(
            pid=pid,
            handle_kill=lambda: self.kill(pid),
            events=events,
            handle_send_stdin=send_stdin,
            handle_close_stdin=close_stdin,
            retain_output=retain_output,
        )

    def list(
        self,
        request_timeout: Optional[float] = None,
    ) -> List[ProcessInfo]:
        try:
            return list_processes(self._target)
        except ConnectError as error:
            raise self._standin_error(error) from None

    def kill(
        self,
        pid: int,
        request_timeout: Optional[float] = None,
    ) -> bool:
        try:
            return kill_process(self._target, pid)
        except ConnectError as error:
            raise self._standin_error(error) from None

    def send_stdin(  # type: ignore[no-untyped-def]
        self,
        pid: int,
        data: Union[str, bytes],
        request_timeout: Optional[float] = None,
    ):
        process = local_process(self._target.sandbox_id, pid)
        if process is None:
            raise self._standin_not_here(pid)
        try:
            process.write_stdin(data.encode() if isinstance(data, str) else data)
        except ConnectError as error:
            raise self._standin_error(error) from None

    def stream_input(
        self,
        pid: int,
        data: Iterable[Union[str, bytes]],
        *,
        timeout: Optional[float] = STREAM_INPUT_TIMEOUT,
    ) -> None:
        if isinstance(data, (str, bytes, bytearray, memoryview)):
            raise InvalidArgumentException(
                "`data` must be an iterable of str or bytes chunks, not a single "
                "chunk; wrap it in a list, e.g. `stream_input(pid, [data])`."
            )
        for chunk in data:
            self.send_stdin(pid, chunk)

    def close_stdin(
        self,
        pid: int,
        request_timeout: Optional[float] = None,
    ) -> None:
        if self._envd_version < ENVD_ENVD_CLOSE:
            raise SandboxException(
                f"Sandbox envd version {self._envd_version} doesn't support closing stdin. "
                f"Please rebuild your template to pick up the latest sandbox version."
            )
        process = local_process(self._target.sandbox_id, pid)
        if process is None:
            raise self._standin_not_here(pid)
        process.close_stdin()

    def run(  # type: ignore[no-untyped-def]
        self,
        cmd: str,
        background: Union[bool, None] = None,
        envs: Optional[Dict[str, str]] = None,
        user: Optional[Username] = None,
        cwd: Optional[str] = None,
        on_stdout: Optional[Callable[[str], None]] = None,
        on_stderr: Optional[Callable[[str], None]] = None,
        stdin: Optional[bool] = None,
        timeout: Optional[float] = 60,
        request_timeout: Optional[float] = None,
        *,
        retain_output: bool = True,
    ):
        if stdin is False and self._envd_version < ENVD_COMMANDS_STDIN:
            raise SandboxException(
                f"Sandbox envd version {self._envd_version} can't specify stdin, it's always turned on. "
                f"Please rebuild your template if you need this feature."
            )
        try:
            process, feed = start_process(self._target, cmd, envs, user, cwd, stdin or False, timeout)
        except ConnectError as error:
            raise self._standin_error(error) from None
        # The command's timeout bounds the whole stream, as the SDK's does (request_timeout does not apply).
        events = event_stream(process, feed, timeout, process_pb.StartResponse)
        handle = self._standin_handle(events, "start process", retain_output)
        return handle if background else handle.wait(on_stdout=on_stdout, on_stderr=on_stderr)

    def connect(  # type: ignore[no-untyped-def]
        self,
        pid: int,
        timeout: Optional[float] = 60,
        request_timeout: Optional[float] = None,
        *,
        retain_output: bool = True,
    ):
        process = local_process(self._target.sandbox_id, pid)
        feed = None if process is None else process.subscribe()
        if process is None or feed is None:
            raise self._standin_not_here(pid)
        events = event_stream(process, feed, timeout, process_pb.ConnectResponse)
        return self._standin_handle(events, "connect to process", retain_output)
