"""The blocking calls a WorkspaceActor runs for commands, files and streamed processes.

``prepare`` checks what the request's rules could not check alone (a path against
``/workspace``, a signal's name, the process it addresses) at once, so a bad request is
answered without touching the workspace, and returns the call to run on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.agent import files
from runtime.errors import Conflict, ProviderUnavailable
from runtime.github import GitHub
from runtime.messages import (
    Command,
    ExecArgs,
    ExecKillArgs,
    ExecStdinArgs,
    FileData,
    GitClone,
    ProcessCall,
    ReadFile,
    RunExec,
    RunOptions,
    StoredWorkspace,
    WriteFile,
    signal_number,
)
from runtime.monitoring.boards import Boards
from runtime.providers.base import Commands
from runtime.state.processes import ProcessTable

__all__ = ["DESCRIPTIONS", "Call", "prepare", "unavailable"]

Call = Callable[[], object]

DESCRIPTIONS = {
    "exec": "command",
    "spawn": "command",
    "write_file": "file write",
    "read_file": "file read",
    "exec_stdin": "write to the process's stdin",
    "exec_kill": "signal",
    "git_clone": "clone",
}
"""How each kind of call is named in errors ("... while the command ran")."""


def unavailable(boards: Boards, entry: StoredWorkspace | None) -> ProviderUnavailable | None:
    """Why the provider cannot serve the workspace of ``entry`` now (its health check failed)."""
    if entry is None:
        return None
    name = entry.record.provider
    status = boards.providers.get(name)
    if status is None or status.healthy:
        return None
    return ProviderUnavailable(f"provider {name} is unhealthy: {status.detail}")


def command(args: ExecArgs, entry: StoredWorkspace) -> Command:
    """The command an ``exec`` asks for; env given at create applies to every command.

    (That is how a claimed pool member gets its requester's env.)
    """
    options = {field: getattr(args, field) for field in RunOptions.__struct_fields__}
    return Command(**{**options, "env": {**entry.spec.env, **args.env}}, argv=args.argv)


def prepare(
    message: RunExec | WriteFile | ReadFile | ProcessCall | GitClone,
    entry: StoredWorkspace,
    commands: Commands,
    processes: ProcessTable,
    github: GitHub | None = None,
) -> tuple[str, Call]:
    """The kind and the blocking call serving ``message`` in the workspace of ``entry``.

    Raises:
        WorkspaceError: The arguments are wrong (or the workspace runs too many processes).
    """
    handle, workspace_id = entry.handle, entry.record.id
    if isinstance(message, GitClone):
        if github is None:
            raise Conflict("this runtime has no GitHub App support")
        clone = message.args
        if clone.path is not None:
            files.workspace_path(clone.path)  # refused before anything runs
        return "git_clone", lambda: github.clone(commands, handle, workspace_id, clone)
    if isinstance(message, RunExec):
        run = command(message.args, entry)
        if not message.args.stream:
            return "exec", lambda: commands.exec(handle, run)
        info, sink = processes.register(workspace_id, run.argv, stdin_open=run.stdin_open)

        def spawn() -> object:
            try:
                pid = commands.spawn(handle, info.process_id, run, sink)
            except BaseException:
                processes.discard(workspace_id, info.process_id)
                raise
            return processes.started(info, pid)

        return "spawn", spawn
    if isinstance(message, ProcessCall):
        return _process_call(message.args, handle, workspace_id, commands, processes)
    if isinstance(message, WriteFile):
        write = message.args
        target = files.workspace_path(write.path)

        def write_file() -> object:
            commands.write_file(handle, target, write.data, write.mode)
            return {}

        return "write_file", write_file
    source = files.workspace_path(message.args.path)
    return "read_file", lambda: FileData(commands.read_file(handle, source))


def _process_call(
    args: ExecStdinArgs | ExecKillArgs, handle: str, workspace_id: str, commands: Commands, processes: ProcessTable
) -> tuple[str, Call]:
    info = processes.get(workspace_id, args.process_id)  # NotFound for a process it never had
    if not info.running:
        ended = f"exit code {info.exit_code}" if info.exit_code is not None else info.error
        raise Conflict(f"process {info.process_id} has ended ({ended})")
    if isinstance(args, ExecKillArgs):
        signal = signal_number(args.signal)

        def kill() -> object:
            commands.kill(handle, args.process_id, signal)
            return {}

        return "exec_kill", kill
    stdin = args

    def feed() -> object:
        commands.write_stdin(handle, stdin.process_id, stdin.data, stdin.close)
        return {}

    return "exec_stdin", feed
