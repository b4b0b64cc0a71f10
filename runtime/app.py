"""The runtime as one object: ``Runtime(settings).start()`` ... ``.stop()``.

Used by ``workspaces serve`` and embedded in host processes alike. Start order: state
log, Gateway sockets (fail fast if an endpoint is taken), then the Supervisor with one
ProviderActor per provider; requests are served once every provider was checked. Stop
runs in reverse: refuse new requests, stop the actors, flush the log, close the sockets.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pykka
import zmq

from actors.context import ActorContext
from actors.names import provider_name
from actors.pool import pool_child
from actors.provider import provider_child
from actors.reaper import reaper_child
from actors.sampler import sampler_child
from actors.supervision import Registry, Sync
from actors.supervisor import Supervisor
from actors.workspace import deliver
from runtime import stats
from runtime.admission import Admission
from runtime.auth import load_or_create_token
from runtime.client import Client, Subscriber
from runtime.config import PROVIDERS, Settings
from runtime.errors import BadRequest, Conflict, Disabled, NotFound, ProviderUnavailable
from runtime.gateway import DEFERRED, Gateway
from runtime.messages import (
    ACTIVE_STATES,
    ActorCrashed,
    ArgsStruct,
    CreateArgs,
    CreateWorkspace,
    DestroyWorkspace,
    ExecArgs,
    ExecKillArgs,
    ExecOutputArgs,
    ExecStdinArgs,
    Extend,
    ExtendArgs,
    ListArgs,
    ProcessCall,
    ReadFile,
    ReadFileArgs,
    ReplyTo,
    Request,
    RunExec,
    Snapshot,
    StoredWorkspace,
    WorkspaceArgs,
    WorkspaceRecord,
    WriteFile,
    WriteFileArgs,
)
from runtime.metrics import Metrics
from runtime.monitor import AlertBoard, Sweeps, UsageBoard
from runtime.outbox import Outbox
from runtime.pool import Pool, adopt_pool_members
from runtime.processes import ProcessTable, Publisher
from runtime.providers.base import Provider, ProviderBoard, ProviderStatus
from runtime.providers.docker import DockerProvider
from runtime.reconcile import reconcile_at_start
from runtime.statelog import StateLog
from runtime.version import __version__

__all__ = ["ProvidersArg", "Runtime"]

ProvidersArg = Mapping[str, Provider] | Callable[[str], Mapping[str, Provider]] | None

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0
_ABORTED = ProviderUnavailable(
    "the runtime stopped before this request finished; its outcome is unknown: check the workspace before retrying",
    retryable=False,
)


class Runtime:
    """One agent-workspace runtime.

    Args:
        settings: The configuration (see ``runtime.config.load_settings``).
        providers: Provider adapters by name, or a function building them from this
            runtime's instance id (which adapters put on what they create); by default
            the Docker (gvisor) provider.
    """

    def __init__(self, settings: Settings, *, providers: ProvidersArg = None) -> None:
        self.settings = settings
        self._providers_override = providers
        self._zmq = zmq.Context()
        suffix = secrets.token_hex(6)
        self.inproc_endpoint = f"inproc://workspaces-{suffix}"
        self.inproc_events_endpoint = f"inproc://workspaces-events-{suffix}"
        self._outbox_endpoint = f"inproc://workspaces-outbox-{suffix}"
        self._statelog: StateLog | None = None
        self._gateway: Gateway | None = None
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._providers: dict[str, Provider] = {}
        self._publisher: Publisher | None = None
        self._ctx: ActorContext | None = None
        self._failure: str | None = None
        self._failed = threading.Event()
        self._instance_id = ""
        self._metrics = Metrics(lambda: self._ctx)
        self.token = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Runtime:
        """Start serving; raise ``WorkspaceError`` (e.g. ``ConfigError``) if it cannot."""
        began = time.monotonic()
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.token = load_or_create_token(settings)
        publisher: dict[str, Outbox] = {}

        def publish(event: Any) -> None:  # runs in the state log's writer thread only
            if "outbox" not in publisher:
                publisher["outbox"] = Outbox(self._zmq, self._outbox_endpoint)
            publisher["outbox"].publish(event)

        self._statelog = StateLog(settings.state_dir / "state", on_commit=publish)
        self._instance_id = self._statelog.instance_id
        self._gateway = Gateway(
            self._zmq,
            token=self.token,
            request_endpoints=[settings.zmq_endpoint, self.inproc_endpoint],
            event_endpoints=[settings.zmq_events_endpoint, self.inproc_events_endpoint],
            outbox_endpoint=self._outbox_endpoint,
            dispatch=self._dispatch,
            observe=self._metrics.observe,
        )
        try:
            self._gateway.start()
            if settings.metrics_addr:
                self._metrics.serve(settings.metrics_addr)
            if settings.enabled:
                self._start_actors(self._statelog)
        except BaseException:
            self._teardown()
            raise
        log.info(
            "runtime %s (instance %s) ready in %.0f ms: requests on %s, events on %s%s",
            __version__,
            self._instance_id,
            (time.monotonic() - began) * 1000,
            self.endpoint,
            self.events_endpoint,
            "" if settings.enabled else " (ENABLE_AGENT_WORKSPACES is false: only ping is served)",
        )
        return self

    def _start_actors(self, statelog: StateLog) -> None:
        settings = self.settings
        providers = self._providers_override
        if callable(providers):
            providers = providers(statelog.instance_id)
        if providers is None:
            providers = {
                "gvisor": DockerProvider(
                    instance_id=statelog.instance_id,
                    default_image=settings.default_image,
                    network_name=settings.network_name,
                )
            }
        self._providers = dict(providers)
        unreconciled = reconcile_at_start(statelog, providers)
        self._publisher = Publisher(lambda: Outbox(self._zmq, self._outbox_endpoint))
        entries = statelog.workspaces()
        active = [entry.record.id for entry in entries if entry.record.state in ACTIVE_STATES]
        pools = {name: Pool(settings.warm_pool_size) for name in providers} if settings.warm_pool_size > 0 else {}
        unwanted = adopt_pool_members(settings, entries, pools)
        registry = Registry()
        ctx = ActorContext(
            settings=settings,
            statelog=statelog,
            zmq_context=self._zmq,
            outbox_endpoint=self._outbox_endpoint,
            registry=registry,
            admission=Admission(settings.max_concurrent, active),
            board=ProviderBoard(),
            providers=providers,
            usage=UsageBoard(),
            alerts=AlertBoard(),
            pools=pools,
            sweeps=Sweeps(settings.cleanup_interval_min * 60.0),
            processes=ProcessTable(self._publisher.publish),
            unreconciled=unreconciled,
        )
        children = [provider_child(ctx, name) for name in providers]
        children += [pool_child(ctx), reaper_child(ctx), sampler_child(ctx)]
        self._supervisor = Supervisor.start(registry, children, on_escalate=self._escalated, on_crash=self._crashed)
        # Serve only once every provider has been checked: Sync is handled after on_start.
        self._supervisor.ask(Sync(), timeout=_START_TIMEOUT_S)
        for name in providers:
            ref = registry.get(provider_name(name))
            if ref is not None:
                ref.ask(Sync(), timeout=_START_TIMEOUT_S)
        for workspace_id, reason in unwanted:
            deliver(ctx, self._supervisor, workspace_id, DestroyWorkspace(None, reason=reason))
        self._ctx = ctx  # requests are served from here on

    def _crashed(self, name: str, reason: str, restarted: bool) -> None:
        if self._statelog is None:
            return
        workspace_id = name.removeprefix("workspace:") if name.startswith("workspace:") else None
        self._statelog.submit(ActorCrashed(actor=name, reason=reason, restarted=restarted, workspace_id=workspace_id))

    def _escalated(self, reason: str) -> None:
        self._failure = reason
        self._failed.set()

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Stop serving; workspaces keep running and are taken back by the next start.

        New requests are refused (``provider_unavailable``, retryable) at once; requests
        in flight get ``grace_s`` seconds to finish, then are answered with an error
        saying their outcome is unknown. Then the actors stop, the state log is flushed
        and the sockets close.
        """
        aborted = 0
        if self._gateway is not None:
            self._gateway.drain()
            deadline = time.monotonic() + grace_s
            pause = threading.Event()
            while self._gateway.in_flight() and time.monotonic() < deadline:
                pause.wait(0.02)
            aborted = self._gateway.in_flight()
            if aborted:
                log.warning("stopping with %d request(s) still in flight after %.0f s: answering them", aborted,
                            grace_s)  # fmt: skip
        self._teardown()
        log.info("runtime stopped%s", f" ({aborted} request(s) aborted)" if aborted else "")

    def _teardown(self) -> None:
        self._metrics.close()
        if self._supervisor is not None:
            try:
                self._supervisor.stop(block=True, timeout=_STOP_TIMEOUT_S)
            except pykka.Timeout:
                log.error("actors did not stop within %.0f s", _STOP_TIMEOUT_S)
            self._supervisor = None
        for provider in self._providers.values():
            provider.close()  # agents end; their streamed processes are reported lost
        self._providers = {}
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        if self._statelog is not None:
            self._statelog.close()
            self._statelog = None
        if self._gateway is not None:
            self._gateway.stop(abort_with=_ABORTED)
            self._gateway = None
        self._zmq.destroy(linger=0)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_failed(self, timeout: float | None = None) -> bool:
        """Block until the Supervisor gave up (``True``) or ``timeout`` passed."""
        return self._failed.wait(timeout)

    @property
    def failure(self) -> str | None:
        """Why the Supervisor gave up, if it did."""
        return self._failure

    # ------------------------------------------------------------------ access

    @property
    def instance_id(self) -> str:
        """This runtime's id (persisted in the state log), carried by its containers' labels."""
        assert self._instance_id, "the runtime was never started"
        return self._instance_id

    @property
    def metrics_address(self) -> str:
        """``host:port`` of the metrics endpoint as bound (empty when off)."""
        return self._metrics.address

    @property
    def endpoint(self) -> str:
        """The configured request endpoint as bound (a ``*`` port resolved)."""
        assert self._gateway is not None, "the runtime is not started"
        return self._gateway.bound_endpoints[0]

    @property
    def events_endpoint(self) -> str:
        """The configured event endpoint as bound."""
        assert self._gateway is not None, "the runtime is not started"
        return self._gateway.bound_event_endpoints[0]

    def client(self, timeout_s: float = 30.0) -> Client:
        """A client over ``inproc://`` for the host process (close it before ``stop``)."""
        return Client(self.inproc_endpoint, self.token, context=self._zmq, timeout_s=timeout_s)

    def subscribe(self, topics: tuple[str, ...] = ("",)) -> Subscriber:
        """An event subscriber over ``inproc://`` (close it before ``stop``)."""
        return Subscriber(self.inproc_events_endpoint, topics, context=self._zmq)

    # ------------------------------------------------------------------ dispatch (gateway thread)

    def _dispatch(self, identity: bytes, request: Request, args: ArgsStruct) -> Any:
        if request.op == "ping":
            return {"version": __version__}
        if not self.settings.enabled:
            raise Disabled("agent workspaces are disabled: set ENABLE_AGENT_WORKSPACES=true and restart")
        ctx = self._ctx
        if ctx is None:
            raise ProviderUnavailable("the runtime is starting; retry in a moment")
        reply_to = ReplyTo(identity, request.id)
        op = request.op
        if isinstance(args, CreateArgs):
            return self._create(ctx, reply_to, args)
        if isinstance(args, ListArgs):
            return self._list(ctx, args)
        if isinstance(args, WorkspaceArgs) and op == "get":
            return self._with_usage(ctx, self._entry(args.workspace_id).record)
        if isinstance(args, WorkspaceArgs) and op == "destroy":
            return self._route(ctx, args.workspace_id, DestroyWorkspace(reply_to))
        if isinstance(args, ExecArgs):
            return self._route(ctx, args.workspace_id, RunExec(reply_to, args))
        if isinstance(args, ExecStdinArgs | ExecKillArgs):
            return self._route(ctx, args.workspace_id, ProcessCall(reply_to, args))
        if isinstance(args, ExecOutputArgs):
            self._entry(args.workspace_id)
            return ctx.processes.output(args.workspace_id, args.process_id, args.after)
        if isinstance(args, WorkspaceArgs) and op == "exec_list":
            self._entry(args.workspace_id)
            return ctx.processes.list(args.workspace_id)
        if isinstance(args, WriteFileArgs):
            return self._route(ctx, args.workspace_id, WriteFile(reply_to, args))
        if isinstance(args, ReadFileArgs):
            return self._route(ctx, args.workspace_id, ReadFile(reply_to, args))
        if isinstance(args, ExtendArgs):
            return self._route(ctx, args.workspace_id, Extend(reply_to, args))
        if op == "providers":
            return self._provider_statuses(ctx)
        if op == "stats":
            return stats.snapshot(ctx)
        if op == "snapshot":
            return self._snapshot(ctx)
        raise BadRequest(f"op {op!r} is not supported by this runtime version ({__version__})")

    def _entry(self, workspace_id: str) -> StoredWorkspace:
        assert self._statelog is not None
        entry = self._statelog.get(workspace_id)
        if entry is None:
            raise NotFound(f"workspace {workspace_id} does not exist")
        return entry

    @staticmethod
    def _with_usage(ctx: ActorContext, record: WorkspaceRecord) -> WorkspaceRecord:
        usage = ctx.usage.get(record.id) if record.state == "ready" else None
        return record if usage is None else msgspec.structs.replace(record, disk_used_bytes=usage.disk_used_bytes)

    def _create(self, ctx: ActorContext, reply_to: ReplyTo, args: CreateArgs) -> Any:
        key = reply_to.key
        made = ctx.statelog.created_by(key) if key else None
        if made is not None:  # a retry the Gateway no longer remembers (e.g. across a restart)
            return self._created(ctx, made)
        name = (args.provider or self.settings.default_provider).lower()
        if name not in PROVIDERS:
            raise BadRequest(f"provider={name!r} is unknown: expected one of {', '.join(PROVIDERS)}")
        fallback_from = None
        if args.provider is None:
            fallback = self._fallback(ctx, name)
            if fallback is not None:
                name, fallback_from = fallback, name
        ref = ctx.registry.get(provider_name(name))
        if ref is None:
            raise ProviderUnavailable(
                f"provider {name} is not running in this runtime", retryable=name in ctx.providers
            )
        try:
            ref.tell(CreateWorkspace(reply_to, args, fallback_from=fallback_from))
        except pykka.ActorDeadError:
            raise ProviderUnavailable(f"provider {name} is restarting") from None
        return DEFERRED

    def _fallback(self, ctx: ActorContext, default: str) -> str | None:
        """The first healthy fallback provider when the default one is unhealthy, if any."""
        status = ctx.board.get(default)
        if status is None or status.healthy:
            return None
        for name in self.settings.fallback_providers:
            candidate = ctx.board.get(name)
            if name != default and candidate is not None and candidate.healthy:
                log.info("provider %s is unhealthy: creating on fallback provider %s", default, name)
                return name
        return None

    def _created(self, ctx: ActorContext, made: StoredWorkspace) -> WorkspaceRecord:
        """The answer to a retried create: the workspace it made, as it is now."""
        record = made.record
        if record.state in ("ready", "creating"):
            return self._with_usage(ctx, record)
        if record.state == "failed":
            raise Conflict(f"workspace {record.id}, made by this request, failed: {record.error}")
        raise Conflict(f"workspace {record.id}, made by this request, is {record.state}")

    def _route(self, ctx: ActorContext, workspace_id: str, message: Any) -> Any:
        state = self._entry(workspace_id).record.state
        if isinstance(message, DestroyWorkspace) and state == "destroyed":
            return {}
        if not isinstance(message, DestroyWorkspace) and state != "ready":
            raise Conflict(f"workspace {workspace_id} is {state}, not ready")
        assert self._supervisor is not None
        deliver(ctx, self._supervisor, workspace_id, message)
        return DEFERRED

    def _list(self, ctx: ActorContext, args: ListArgs) -> list[WorkspaceRecord]:
        assert self._statelog is not None
        records = []
        for entry in self._statelog.workspaces():
            record = entry.record
            if entry.pooled or (args.state is None and record.state == "destroyed"):
                continue
            if args.state is not None and record.state != args.state:
                continue
            if any(record.labels.get(key) != value for key, value in args.labels.items()):
                continue
            records.append(self._with_usage(ctx, record))
        return records

    def _snapshot(self, ctx: ActorContext) -> Snapshot:
        seq, entries = ctx.statelog.snapshot()
        records = [
            self._with_usage(ctx, entry.record)
            for entry in entries
            if not entry.pooled and entry.record.state != "destroyed"
        ]
        return Snapshot(seq, records)

    def _provider_statuses(self, ctx: ActorContext) -> list[ProviderStatus]:
        assert self._statelog is not None
        counts: dict[str, int] = {}
        for entry in self._statelog.workspaces():
            if entry.record.state in ACTIVE_STATES:
                counts[entry.record.provider] = counts.get(entry.record.provider, 0) + 1
        return [msgspec.structs.replace(status, workspaces=counts.get(status.name, 0)) for status in ctx.board.all()]
