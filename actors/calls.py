"""The blocking calls a WorkspaceActor runs for commands, files and streamed processes.

``prepare`` checks a request's arguments at once (so a bad request is answered without
touching the workspace) and returns the call to run on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime import files
from runtime.errors import Conflict
from runtime.messages import ExecKillArgs, ProcessCall, ReadFile, RunExec, StoredWorkspace, WriteFile
from runtime.processes import ProcessTable
from runtime.providers import agent_calls
from runtime.providers.base import Provider
from runtime.resources import check_env, exec_argv

__all__ = ["DESCRIPTIONS", "Call", "prepare"]

Call = Callable[[], object]

DESCRIPTIONS = {
    "exec": "command",
    "spawn": "command",
    "write_file": "file write",
    "read_file": "file read",
    "exec_stdin": "write to the process's stdin",
    "exec_kill": "signal",
}
"""How each kind of call is named in errors ("... while the command ran")."""


def prepare(
    message: RunExec | WriteFile | ReadFile | ProcessCall,
    entry: StoredWorkspace,
    provider: Provider,
    processes: ProcessTable,
) -> tuple[str, Call]:
    """The kind and the blocking call serving ``message``.

    Raises:
        WorkspaceError: The arguments are wrong (or the workspace runs too many processes).
    """
    handle, workspace_id = entry.handle, entry.record.id
    if isinstance(message, RunExec):
        args = message.args
        argv = exec_argv(args)
        check_env(args.env)
        # env given at create applies to every command (that is how pool members get theirs)
        env = {**entry.spec.env, **args.env}
        if not args.stream:

            def run() -> object:
                return provider.exec(handle, argv, cwd=args.cwd, env=env, stdin=args.stdin, timeout_s=args.timeout_s)

            return "exec", run
        info, sink = processes.register(workspace_id, argv, stdin_open=args.stdin_open)

        def spawn() -> object:
            try:
                pid = provider.spawn(
                    handle, info.process_id, argv, cwd=args.cwd, env=env, stdin=args.stdin,
                    stdin_open=args.stdin_open, timeout_s=args.timeout_s, sink=sink,
                )  # fmt: skip
            except BaseException:
                processes.discard(workspace_id, info.process_id)
                raise
            return processes.started(info, pid)

        return "spawn", spawn
    if isinstance(message, ProcessCall):
        call_args = message.args
        info = processes.get(workspace_id, call_args.process_id)  # NotFound for a process it never had
        if not info.running:
            ended = f"exit code {info.exit_code}" if info.exit_code is not None else info.error
            raise Conflict(f"process {info.process_id} has ended ({ended})")
        if isinstance(call_args, ExecKillArgs):
            signal = agent_calls.signal_number(call_args.signal)

            def kill() -> object:
                provider.kill(handle, call_args.process_id, signal)
                return {}

            return "exec_kill", kill
        stdin = call_args

        def feed() -> object:
            provider.write_stdin(handle, stdin.process_id, stdin.data, stdin.close)
            return {}

        return "exec_stdin", feed
    if isinstance(message, WriteFile):
        write = message.args
        target = files.workspace_path(write.path)
        files.check_mode(write.mode)

        def write_file() -> object:
            provider.write_file(handle, target, write.data, write.mode)
            return {}

        return "write_file", write_file
    source = files.workspace_path(message.args.path)

    def read_file() -> object:
        return {"data": provider.read_file(handle, source)}

    return "read_file", read_file
