"""Routing: each op of the wire protocol to its handler, in one table.

The Gateway calls the ``Router`` in its own thread with every decoded, authenticated
request. A handler either answers from what is known without asking an actor (the
state log, the boards, the process table: ``get``, ``list``, ``stats``...) or tells the
actor that owns the work and returns ``DEFERRED``: that actor answers the client. A
handler never blocks and never judges a workspace's state: whether a workspace can take
an op is decided once, by its own actor, which alone knows its state for certain.

The ops of ``JOURNALED_OPS`` (their second run would do something the first did not) are
recorded in the state log's request journal on the way: one begun by an earlier run of
the runtime - a retry across a crash, whose reply was lost - is refused, never run again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from actors.context import ActorContext
from actors.names import CREDENTIALS, provider_name
from runtime.config import PROVIDERS, Settings
from runtime.errors import BadRequest, Conflict, Disabled, NotFound, ProviderUnavailable
from runtime.messages import (
    ACTIVE_STATES,
    ArgsStruct,
    AuditArgs,
    CreateArgs,
    CreateWorkspace,
    DestroyWorkspace,
    ExecOutputArgs,
    Extend,
    GitClone,
    GithubApp,
    ListArgs,
    ManageGithub,
    McpCallArgs,
    McpServerStatus,
    ProcessCall,
    ProviderStatus,
    ReadFile,
    ReplyTo,
    Request,
    RunExec,
    Snapshot,
    StoredWorkspace,
    WorkspaceArgs,
    WorkspaceRecord,
    WriteFile,
)
from runtime.monitoring import stats
from runtime.version import __version__
from runtime.wire.gateway import DEFERRED

__all__ = ["ROUTES", "Router"]

log = logging.getLogger(__name__)

Handler = Callable[[ActorContext, ReplyTo, Any], Any]
"""Serves one op: the runtime's machinery, who asked, and the op's decoded arguments."""


def _entry(ctx: ActorContext, workspace_id: str) -> StoredWorkspace:
    entry = ctx.statelog.get(workspace_id)
    if entry is None:
        raise NotFound(f"workspace {workspace_id} does not exist")
    return entry


def _with_usage(ctx: ActorContext, record: WorkspaceRecord) -> WorkspaceRecord:
    usage = ctx.boards.usage.get(record.id) if record.state == "ready" else None
    return record if usage is None else msgspec.structs.replace(record, disk_used_bytes=usage.disk_used_bytes)


def _to_workspace(make: Callable[[ReplyTo, Any], Any]) -> Handler:
    """A handler telling the workspace's actor the message ``make`` builds (its state is the actor's to judge)."""

    def handle(ctx: ActorContext, reply_to: ReplyTo, args: Any) -> Any:
        _entry(ctx, args.workspace_id)
        ctx.deliver(args.workspace_id, make(reply_to, args))
        return DEFERRED

    return handle


# ---------------------------------------------------------------------- answered here


def _providers(ctx: ActorContext, _: ReplyTo, __: ArgsStruct) -> list[ProviderStatus]:
    counts: dict[str, int] = {}
    for entry in ctx.statelog.workspaces():
        if entry.record.state in ACTIVE_STATES:
            counts[entry.record.provider] = counts.get(entry.record.provider, 0) + 1
    statuses = ctx.boards.providers.all()
    return [msgspec.structs.replace(status, workspaces=counts.get(status.name, 0)) for status in statuses]


def _get(ctx: ActorContext, _: ReplyTo, args: WorkspaceArgs) -> WorkspaceRecord:
    return _with_usage(ctx, _entry(ctx, args.workspace_id).record)


def _list(ctx: ActorContext, _: ReplyTo, args: ListArgs) -> list[WorkspaceRecord]:
    records = []
    for entry in ctx.statelog.workspaces():
        record = entry.record
        if entry.pooled or (args.state is None and record.state == "destroyed"):
            continue
        if args.state is not None and record.state != args.state:
            continue
        if any(record.labels.get(key) != value for key, value in args.labels.items()):
            continue
        records.append(_with_usage(ctx, record))
    return records


def _snapshot(ctx: ActorContext, _: ReplyTo, __: ArgsStruct) -> Snapshot:
    seq, entries = ctx.statelog.snapshot()
    live = [entry for entry in entries if not entry.pooled and entry.record.state != "destroyed"]
    return Snapshot(seq, [_with_usage(ctx, entry.record) for entry in live])


def _stats(ctx: ActorContext, _: ReplyTo, __: ArgsStruct) -> dict[str, Any]:
    return stats.snapshot(ctx.statelog, ctx.boards, ctx.settings)


def _exec_list(ctx: ActorContext, _: ReplyTo, args: WorkspaceArgs) -> Any:
    _entry(ctx, args.workspace_id)
    return ctx.processes.list(args.workspace_id)


def _exec_output(ctx: ActorContext, _: ReplyTo, args: ExecOutputArgs) -> Any:
    _entry(ctx, args.workspace_id)
    return ctx.processes.output(args.workspace_id, args.process_id, args.after)


def _github_apps(ctx: ActorContext, _: ReplyTo, __: ArgsStruct) -> list[GithubApp]:
    return ctx.github_apps()[0].list()


def _github_audit(ctx: ActorContext, _: ReplyTo, args: AuditArgs) -> list[Any]:
    return ctx.statelog.audited(args.after, args.limit)


def _mcp_list(ctx: ActorContext, _: ReplyTo, __: ArgsStruct) -> list[McpServerStatus]:
    return [] if ctx.mcp is None else ctx.mcp.statuses()


def _mcp_call(ctx: ActorContext, reply_to: ReplyTo, args: McpCallArgs) -> Any:
    if ctx.mcp is None:
        raise NotFound(f"MCP server {args.name!r} does not exist (this runtime has no MCP servers)")
    answer = ctx.mcp.call(reply_to, args.name, args.message)
    return DEFERRED if answer is None else answer


def _to_credentials(ctx: ActorContext, reply_to: ReplyTo, args: Any) -> Any:
    ctx.github_apps()  # refused at once in a runtime without them
    if not ctx.registry.tell(CREDENTIALS, ManageGithub(reply_to, args)):
        raise ProviderUnavailable("the credentials actor is restarting")
    return DEFERRED


def _journaled(op: str, handler: Handler, *, durable: bool = False) -> Handler:
    """``handler`` behind the request journal (see ``runtime.state.journal``).

    A request an earlier run began is refused (``Conflict``, not retryable): it may have
    run, and running it again is the client's decision, under a new id. Otherwise it is
    journaled and handed on; the write is queued, not awaited, and whoever starts the work
    waits for it (``ActorContext.run_blocking``). ``durable``: wait here, for an op whose
    work starts in this thread (``mcp_call`` writes to its server at once).
    """

    def handle(ctx: ActorContext, reply_to: ReplyTo, args: Any) -> Any:
        key = reply_to.key
        if not key:  # an empty id cannot tell requests apart: no retry protection
            return handler(ctx, reply_to, args)
        journal = ctx.statelog.journal
        earlier = journal.previous_run(key)
        if earlier is not None:
            began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(earlier.at))
            raise Conflict(
                f"request {reply_to.request_id} ({earlier.op}) was in flight when the runtime restarted (it began at "
                f"{began}); it may have run, so it is not run again: check its effect, and send a new id to run it"
            )
        journal.begin(key, op)
        if durable:
            journal.wait(key)
        return handler(ctx, reply_to, args)

    return handle


# ---------------------------------------------------------------------- told to an actor


def _create(ctx: ActorContext, reply_to: ReplyTo, args: CreateArgs) -> Any:
    key = reply_to.key
    made = ctx.statelog.created_by(key) if key else None
    if made is not None:  # a retry the Gateway no longer remembers (e.g. across a restart)
        record = made.record
        if record.state in ("ready", "creating"):
            return _with_usage(ctx, record)
        if record.state == "failed":
            raise Conflict(f"workspace {record.id}, made by this request, failed: {record.error}")
        raise Conflict(f"workspace {record.id}, made by this request, is {record.state}")
    name = (args.provider or ctx.settings.default_provider).lower()
    if name not in PROVIDERS:
        raise BadRequest(f"provider={name!r} is unknown: expected one of {', '.join(PROVIDERS)}")
    # The provider's actor admits it, or hands it to a fallback provider when it is unhealthy.
    if not ctx.registry.tell(provider_name(name), CreateWorkspace(reply_to, args)):
        if name in ctx.providers:
            raise ProviderUnavailable(f"provider {name} is restarting")
        raise ProviderUnavailable(f"provider {name} is not running in this runtime", retryable=False)
    return DEFERRED


_PONG: Final = {"version": __version__, "ready": True}
_STARTING: Final = {"version": __version__, "ready": False}
"""``ping``'s answer: ``ready`` is false until start-up reconciliation is done and the actors run."""

ROUTES: Final[dict[str, Handler]] = {
    "ping": lambda _ctx, _reply_to, _args: _PONG,
    "providers": _providers,
    "create": _create,
    "get": _get,
    "list": _list,
    "exec": _journaled("exec", _to_workspace(RunExec)),
    "exec_stdin": _journaled("exec_stdin", _to_workspace(ProcessCall)),
    "exec_kill": _to_workspace(ProcessCall),
    "exec_list": _exec_list,
    "exec_output": _exec_output,
    "write_file": _to_workspace(WriteFile),
    "read_file": _to_workspace(ReadFile),
    "destroy": _to_workspace(lambda reply_to, args: DestroyWorkspace(reply_to)),
    "extend": _to_workspace(Extend),
    "stats": _stats,
    "snapshot": _snapshot,
    "github_app_set": _to_credentials,
    "github_app_list": _github_apps,
    "github_app_delete": _to_credentials,
    "github_key_rotate": _to_credentials,
    "github_audit": _github_audit,
    "git_clone": _journaled("git_clone", _to_workspace(GitClone)),
    "mcp_list": _mcp_list,
    "mcp_call": _journaled("mcp_call", _mcp_call, durable=True),
}
"""Every op of wire protocol v1 and its handler (``runtime.messages.OPS`` lists the same ops)."""


class Router:
    """The Gateway's dispatcher: the master switch, the start-up wait, then ``ROUTES``.

    ``ping`` is always answered, saying whether the runtime is ``ready``. Every other op answers ``disabled`` while
    ``ENABLE_AGENT_WORKSPACES`` is off, and ``provider_unavailable`` (retryable) until
    ``serve`` is called, once start-up reconciliation is done and the actors run.

    Args:
        settings: The configuration (for the master switch).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ctx: ActorContext | None = None

    def serve(self, ctx: ActorContext) -> None:
        """Start routing to the actors of ``ctx``."""
        self._ctx = ctx

    @property
    def serving(self) -> bool:
        """Whether requests reach the actors."""
        return self._ctx is not None

    def __call__(self, identity: bytes, request: Request, args: ArgsStruct) -> Any:
        ctx = self._ctx
        if request.op == "ping":  # answered in every state, and as fast as can be
            return _PONG if ctx is not None or not self._settings.enabled else _STARTING
        if not self._settings.enabled:
            raise Disabled("agent workspaces are disabled: set ENABLE_AGENT_WORKSPACES=true and restart")
        if ctx is None:
            raise ProviderUnavailable("the runtime is starting; retry in a moment")
        handler = ROUTES.get(request.op)
        if handler is None:
            raise BadRequest(f"op {request.op!r} is not supported by this runtime version ({__version__})")
        return handler(ctx, ReplyTo(identity, request.id), args)
