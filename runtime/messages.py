"""The one vocabulary: wire protocol v1, records, events and actor commands.

Every message - on the wire, between actors, in the LMDB log - is a frozen
``msgspec.Struct`` defined here, once. Encoders and decoders are built once at import.
Wire shapes follow DESIGN.md section 3; additions are new optional fields or new ops,
never a change of meaning.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

__all__ = [
    "ACTIVE_STATES",
    "OPS",
    "ActorCrashed",
    "Adopt",
    "AlertCleared",
    "AlertEvent",
    "AlertRaised",
    "AnyEvent",
    "ArgsStruct",
    "BootWorkspace",
    "Completed",
    "ContainerEvent",
    "CreateArgs",
    "CreateWorkspace",
    "DestroyWorkspace",
    "ErrorBody",
    "ErrorReply",
    "Event",
    "ExecArgs",
    "ExecKillArgs",
    "ExecOutputArgs",
    "ExecResult",
    "ExecStdinArgs",
    "Extend",
    "ExtendArgs",
    "ListArgs",
    "NoArgs",
    "OkReply",
    "ProcessCall",
    "ProviderHealthChanged",
    "ReadFile",
    "ReadFileArgs",
    "Refill",
    "ReplyTo",
    "Request",
    "Resync",
    "RunExec",
    "Snapshot",
    "State",
    "StoredWorkspace",
    "Tick",
    "WorkspaceArgs",
    "WorkspaceRecord",
    "WorkspaceSpec",
    "WorkspaceStateChanged",
    "WriteFile",
    "WriteFileArgs",
    "decode_args",
    "decode_event",
    "decode_request",
    "decode_stored",
    "encode",
]

State = Literal["creating", "ready", "stopping", "destroyed", "failed"]
ACTIVE_STATES: frozenset[str] = frozenset({"creating", "ready", "stopping"})

# --------------------------------------------------------------------------- records


class WorkspaceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the runtime promised about one workspace (the wire's workspace record).

    Beyond DESIGN.md's fields: ``oom_kills`` counts processes the kernel killed at the
    memory limit while the workspace lived on; ``disk_used_bytes`` is the latest disk
    measurement (filled in when the record is read, ``None`` until measured);
    ``fallback_from`` names the default provider that was unhealthy when this workspace
    was created on a fallback provider (``WORKSPACE_FALLBACK_PROVIDERS``).
    """

    id: str
    state: State
    provider: str
    runtime: str
    image: str
    cpu: float
    memory_bytes: int
    disk_bytes: int
    labels: dict[str, str]
    persistent: bool
    created_at: float
    expires_at: float | None
    from_pool: bool = False
    error: str | None = None
    oom_kills: int = 0
    disk_used_bytes: int | None = None
    fallback_from: str | None = None


class WorkspaceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a provider needs to create a workspace; resolved from defaults."""

    workspace_id: str
    image: str
    cpu: float
    memory_bytes: int
    disk_bytes: int
    env: dict[str, str]
    labels: dict[str, str]


class StoredWorkspace(msgspec.Struct, frozen=True, kw_only=True, tag="workspace.v1"):
    """The value of the LMDB ``workspaces`` database: the record and private details.

    Attributes:
        record: The public record.
        spec: How the workspace was asked for (env stays private).
        handle: The provider's own name for the workspace (e.g. the container name).
        pooled: A warm pool member nobody has claimed yet (hidden from ``list``).
        request: The key (client identity and request id) of the ``create`` that made
            it, so a retry of that request is answered with this workspace, even after
            a restart; cleared when the create is rolled back.
    """

    record: WorkspaceRecord
    spec: WorkspaceSpec
    handle: str = ""
    pooled: bool = False
    request: str = ""


# --------------------------------------------------------------------------- wire


class Request(msgspec.Struct, frozen=True):
    """A request envelope; ``args`` is decoded per op once the op is known."""

    id: str
    op: str
    token: str = ""
    args: msgspec.Raw = msgspec.Raw(b"\x80")


class ArgsStruct(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every op's arguments: unknown fields are refused, not ignored."""


class NoArgs(ArgsStruct, frozen=True):
    """Arguments of ops that take none."""


class CreateArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``create``; ``None`` means the configured default."""

    provider: str | None = None
    image: str | None = None
    cpu: float | None = None
    memory: int | str | None = None
    disk: int | str | None = None
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    ttl_seconds: float | None = None
    persistent: bool = False


class WorkspaceArgs(ArgsStruct, frozen=True):
    """Arguments of ops addressing one workspace: ``get``, ``destroy``."""

    workspace_id: str


class ListArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``list``: every label must match; ``state`` filters by state."""

    labels: dict[str, str] = {}
    state: State | None = None


class ExecArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec``: ``cmd`` is argv, or a string run by ``sh -c``."""

    workspace_id: str
    cmd: list[str] | str
    cwd: str | None = None
    env: dict[str, str] = {}
    stdin: bytes | None = None
    timeout_s: float | None = None
    stream: bool = False
    stdin_open: bool = False


class ExecStdinArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_stdin``: bytes for a streamed process's stdin; ``close`` ends it."""

    workspace_id: str
    process_id: str
    data: bytes = b""
    close: bool = False


class ExecKillArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_kill``: a signal (name or number) for the process's whole group."""

    workspace_id: str
    process_id: str
    signal: str | int = "TERM"


class ExecOutputArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``exec_output``: the output events kept for a process, after ``after``."""

    workspace_id: str
    process_id: str
    after: int = 0


class WriteFileArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``write_file``."""

    workspace_id: str
    path: str
    data: bytes
    mode: int | None = None


class ReadFileArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``read_file``."""

    workspace_id: str
    path: str


class ExtendArgs(ArgsStruct, kw_only=True, frozen=True):
    """Arguments of ``extend``."""

    workspace_id: str
    ttl_seconds: float


OPS: dict[str, type[ArgsStruct]] = {
    "ping": NoArgs,
    "providers": NoArgs,
    "create": CreateArgs,
    "get": WorkspaceArgs,
    "list": ListArgs,
    "exec": ExecArgs,
    "exec_stdin": ExecStdinArgs,
    "exec_kill": ExecKillArgs,
    "exec_list": WorkspaceArgs,
    "exec_output": ExecOutputArgs,
    "write_file": WriteFileArgs,
    "read_file": ReadFileArgs,
    "destroy": WorkspaceArgs,
    "extend": ExtendArgs,
    "stats": NoArgs,
    "snapshot": NoArgs,
}


class ExecResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``exec``; ``via`` says how it ran (``agent``, or ``docker`` exec)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    duration_ms: float = 0.0
    via: str = ""


class Snapshot(msgspec.Struct, frozen=True):
    """The result of ``snapshot``: the records (as ``list`` shows them) as of event ``seq``.

    A subscriber that reconnects takes a snapshot, then applies only events with a
    higher ``seq``; a gap in ``seq`` means it missed events and should take another.
    """

    seq: int
    workspaces: list[WorkspaceRecord]


class ErrorBody(msgspec.Struct, frozen=True):
    """The ``error`` map of a failed reply."""

    code: str
    message: str
    retryable: bool


class OkReply(msgspec.Struct, frozen=True):
    """A successful reply."""

    id: str
    result: Any
    ok: bool = True


class ErrorReply(msgspec.Struct, frozen=True):
    """A failed reply."""

    id: str
    error: ErrorBody
    ok: bool = False


# --------------------------------------------------------------------------- events


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of published events; the state log assigns ``seq`` and ``ts``."""

    topic: ClassVar[str]
    seq: int = 0
    ts: float = 0.0


class WorkspaceStateChanged(Event, tag="workspace.state", frozen=True):
    """A workspace's record changed; ``record`` is the record after the change."""

    topic: ClassVar[str] = "workspace"
    workspace_id: str
    state: State
    record: WorkspaceRecord
    reason: str | None = None
    pooled: bool = False


class AlertEvent(Event, frozen=True):
    """What alert events carry; ``key`` names the condition (one alert per key)."""

    topic: ClassVar[str] = "alert"
    key: str
    resource: str
    message: str
    value: float
    limit: float
    workspace_id: str | None = None
    threshold: float | None = None


class AlertRaised(AlertEvent, frozen=True, tag="alert.raised"):
    """A resource crossed its threshold."""


class AlertCleared(AlertEvent, frozen=True, tag="alert.cleared"):
    """The condition of an earlier ``AlertRaised`` with the same ``key`` is over."""


class ActorCrashed(Event, frozen=True, tag="actor.crashed"):
    """An actor raised; ``restarted`` says whether the Supervisor started a new one.

    ``workspace_id`` is set when the actor owned a workspace (only that one is affected).
    """

    topic: ClassVar[str] = "actor"
    actor: str
    reason: str
    restarted: bool
    workspace_id: str | None = None


class ProviderHealthChanged(Event, frozen=True, tag="provider.health"):
    """A provider turned healthy or unhealthy (or its detail changed)."""

    topic: ClassVar[str] = "provider"
    provider: str
    healthy: bool
    detail: str
    runtime: str


AnyEvent = WorkspaceStateChanged | AlertRaised | AlertCleared | ActorCrashed | ProviderHealthChanged

# --------------------------------------------------------------------------- actor commands


class ReplyTo(msgspec.Struct, frozen=True):
    """Where an actor sends the reply: the client's ROUTER identity and request id."""

    identity: bytes
    request_id: str

    @property
    def key(self) -> str:
        """The printable key of this request (stored with a workspace a ``create`` made).

        Empty for an empty id: such requests cannot be told apart, so they are never matched.
        """
        return f"{self.identity.hex()}:{self.request_id}" if self.request_id else ""


class CreateWorkspace(msgspec.Struct, frozen=True, tag="cmd.create"):
    """Gateway -> ProviderActor: create a workspace (``cold``: do not take it from the pool).

    ``fallback_from`` is set when this provider stands in for an unhealthy default.
    """

    reply_to: ReplyTo
    args: CreateArgs
    cold: bool = False
    fallback_from: str | None = None


class Adopt(msgspec.Struct, frozen=True, tag="cmd.adopt"):
    """ProviderActor -> WorkspaceActor of a pool member: become the workspace ``args`` asks for.

    ``provider`` is the claiming ProviderActor's provider, to hand the request back to
    (as a cold create) should the member be gone; ``fallback_from`` as in ``CreateWorkspace``.
    """

    reply_to: ReplyTo
    args: CreateArgs
    provider: str
    fallback_from: str | None = None


class Refill(msgspec.Struct, frozen=True, tag="cmd.refill"):
    """-> PoolActor: a member was claimed, became ready or failed; top the pool up."""


class BootWorkspace(msgspec.Struct, frozen=True, tag="cmd.boot"):
    """-> WorkspaceActor: persist ``entry`` and create the workspace (no reply for pool members)."""

    reply_to: ReplyTo | None
    entry: StoredWorkspace


class RunExec(msgspec.Struct, frozen=True, tag="cmd.exec"):
    """Gateway -> WorkspaceActor: run a command."""

    reply_to: ReplyTo
    args: ExecArgs


class ProcessCall(msgspec.Struct, frozen=True, tag="cmd.process"):
    """Gateway -> WorkspaceActor: feed or signal a streamed process."""

    reply_to: ReplyTo
    args: ExecStdinArgs | ExecKillArgs


class WriteFile(msgspec.Struct, frozen=True, tag="cmd.write_file"):
    """Gateway -> WorkspaceActor: write a file in the workspace."""

    reply_to: ReplyTo
    args: WriteFileArgs


class ReadFile(msgspec.Struct, frozen=True, tag="cmd.read_file"):
    """Gateway -> WorkspaceActor: read a file from the workspace."""

    reply_to: ReplyTo
    args: ReadFileArgs


class Extend(msgspec.Struct, frozen=True, tag="cmd.extend"):
    """Gateway -> WorkspaceActor: move the expiry to now + ``ttl_seconds``."""

    reply_to: ReplyTo
    args: ExtendArgs


class ContainerEvent(msgspec.Struct, frozen=True, tag="cmd.container_event"):
    """ProviderActor -> WorkspaceActor: the backend reported something about a workspace.

    Attributes:
        workspace_id: The workspace.
        kind: ``oom`` (a process was killed at the memory limit, the workspace lives on),
            ``died`` (the workspace's container stopped) or ``vanished`` (it was removed
            behind the runtime's back).
        detail: What happened, for the record's ``error`` and the logs.
    """

    workspace_id: str
    kind: Literal["oom", "died", "vanished"]
    detail: str


class Tick(msgspec.Struct, frozen=True, tag="cmd.tick"):
    """Ticker -> actor: time for the periodic work (health checks, measurements)."""


class Resync(msgspec.Struct, frozen=True, tag="cmd.resync"):
    """Watcher -> ProviderActor: events may have been missed; compare with the backend now."""


class DestroyWorkspace(msgspec.Struct, frozen=True, tag="cmd.destroy"):
    """-> WorkspaceActor: destroy the workspace (idempotent); ``reason`` goes in the event."""

    reply_to: ReplyTo | None
    reason: str | None = None


class Completed(msgspec.Struct, frozen=True, tag="cmd.completed"):
    """Worker -> actor: a blocking call finished with ``value`` or ``error``.

    Attributes:
        kind: Which call finished (e.g. ``"boot"``, ``"exec"``, ``"destroy"``).
        reply_to: Who is waiting for the outcome, if anyone.
        value: The call's return value.
        error: The exception it raised, if it failed.
    """

    kind: str
    reply_to: ReplyTo | None
    value: Any = None
    error: Any = None


# --------------------------------------------------------------------------- codecs

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_stored_decoder = msgspec.msgpack.Decoder(StoredWorkspace)
_event_decoder: msgspec.msgpack.Decoder[AnyEvent] = msgspec.msgpack.Decoder(AnyEvent)
_args_decoders = {op: msgspec.msgpack.Decoder(cls) for op, cls in OPS.items()}


def encode(obj: Any) -> bytes:
    """Encode anything of this vocabulary (or plain data) as MessagePack."""
    return _encoder.encode(obj)


def decode_request(frame: bytes | memoryview) -> Request:
    """Decode a request envelope (raises ``msgspec.DecodeError`` if malformed)."""
    return _request_decoder.decode(frame)


def decode_args(op: str, raw: msgspec.Raw) -> ArgsStruct:
    """Decode the ``args`` of a known op (raises ``msgspec.DecodeError`` if invalid)."""
    return _args_decoders[op].decode(raw)


def decode_stored(value: bytes | memoryview) -> StoredWorkspace:
    """Decode a value of the LMDB ``workspaces`` database."""
    return _stored_decoder.decode(value)


def decode_event(value: bytes | memoryview) -> AnyEvent:
    """Decode an event from the LMDB ``events`` database or the PUB stream."""
    return _event_decoder.decode(value)
