"""The runtime as one object: ``Runtime(settings).start()`` ... ``.stop()``.

This is the wiring at the top of the layers: it puts the machinery of ``runtime`` and
the actors of ``actors`` together, and is the one module of ``runtime`` (with the CLI
above it) that imports the actors. Used by ``workspaces serve`` and embedded in host
processes alike. Start order: state log, Gateway sockets (fail fast if an endpoint is
taken), start-up reconciliation, then the supervision tree; requests are served once
every provider was checked. Stop runs in reverse: refuse new requests, stop the actors,
flush the log, close the sockets.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

import pykka
import zmq

from actors import ActorContext, Registry, Router, start_tree
from actors.names import POOL, provider_name
from actors.supervision import Sync
from runtime.capacity import Admission, Pool
from runtime.capacity.pool import adopt_pool_members
from runtime.config import Settings
from runtime.config.mcp import McpServerSpec, load_mcp_servers
from runtime.errors import ProviderUnavailable
from runtime.github import CredentialStore, GitHub, TokenBroker
from runtime.http import HttpServer, app
from runtime.mcp import Door, McpHost
from runtime.messages import ACTIVE_STATES, AnyEvent, DestroyWorkspace, Event, Refill
from runtime.monitoring.boards import Boards, Sweeps
from runtime.monitoring.metrics import Metrics
from runtime.providers.base import Provider
from runtime.providers.docker import DockerProvider
from runtime.providers.e2b import e2b_in_use, e2b_provider
from runtime.providers.firecracker import firecracker_in_use, firecracker_provider
from runtime.state import ProcessTable, StateLog, reconcile_at_start
from runtime.version import __version__
from runtime.wire import Client, Publisher, Subscriber
from runtime.wire.auth import load_or_create_token
from runtime.wire.gateway import Gateway
from runtime.wire.keys import client_keys, ensure_server_keys
from runtime.wire.outbox import Outbox
from runtime.wire.security import check_exposure

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
            the Docker (gvisor) provider, the E2B one (e2b) when it is the default or a
            fallback provider or ``E2B_API_KEY`` is set, and the Firecracker one
            (firecracker) when it is the default or a fallback or ``FIRECRACKER_BIN`` or
            ``FIRECRACKER_MANAGER_SOCKET`` is set.
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
        self._router = Router(settings)
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._providers: dict[str, Provider] = {}
        self._publisher: Publisher | None = None
        self._ctx: ActorContext | None = None
        self._failure: str | None = None
        self._failed = threading.Event()
        self._instance_id = ""
        self._metrics = Metrics(lambda: None if self._ctx is None else (self._ctx.statelog, self._ctx.boards))
        self._http: HttpServer | None = None
        self._stop_callbacks: list[Callable[[], None]] = []
        self._mcp: McpHost | None = None
        self.token = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Runtime:
        """Start serving; raise ``WorkspaceError`` (e.g. ``ConfigError``) if it cannot."""
        began = time.monotonic()
        settings = self.settings
        check_exposure(settings)  # before anything is made: listening beyond loopback needs CURVE
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.token = load_or_create_token(settings)
        curve_secret = ensure_server_keys(settings.state_dir).secret if settings.zmq_curve else None
        mcp_servers = load_mcp_servers(settings.mcp_config)  # a wrong file stops start-up, naming the field
        publisher: dict[str, Outbox] = {}

        def publish(event: Event) -> None:  # runs in the state log's writer thread only
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
            dispatch=self._router,
            observe=self._metrics.observe,
            curve_secret_key=curve_secret,
            client_keys=lambda: client_keys(settings.state_dir).values(),
        )
        try:
            self._gateway.start()
            if settings.metrics_addr:
                self._metrics.serve(settings.metrics_addr)
            if settings.http_addr:  # before start-up reconciliation: /readyz says 503 meanwhile
                self._http = HttpServer(app(self), settings.http_addr).start()
            if settings.enabled:
                self._start_actors(self._statelog, mcp_servers)
        except BaseException:
            self._teardown()
            raise
        log.info(
            "runtime %s (instance %s) ready in %.0f ms: requests on %s, events on %s%s%s",
            __version__,
            self._instance_id,
            (time.monotonic() - began) * 1000,
            self.endpoint,
            self.events_endpoint,
            " (CURVE: listed client keys only)" if settings.zmq_curve else "",
            "" if settings.enabled else " (ENABLE_AGENT_WORKSPACES is false: only ping is served)",
        )
        return self

    def _make_providers(self, instance_id: str) -> dict[str, Provider]:
        providers = self._providers_override
        if callable(providers):
            providers = providers(instance_id)
        if providers is None:
            settings = self.settings
            providers = {
                "gvisor": DockerProvider(
                    instance_id=instance_id,
                    default_image=settings.default_image,
                    network_name=settings.network_name,
                    read_only_root=settings.read_only_root,
                )
            }
            if e2b_in_use(settings):
                providers["e2b"] = e2b_provider(settings, instance_id)
            if firecracker_in_use(settings):
                providers["firecracker"] = firecracker_provider(settings, instance_id)
        return dict(providers)

    def _mcp_door(self, statelog: StateLog) -> Door:
        def client() -> Client:
            # Retryable answers (e.g. a workspace actor that was stopping) are retried with the same id.
            return Client(self.inproc_endpoint, self.token, context=self._zmq, timeout_s=60.0, retries=3)

        return Door(
            client=client,
            subscribe=self.subscribe,
            outbox=lambda: Outbox(self._zmq, self._outbox_endpoint),
            publish=statelog.submit,
        )

    def _start_actors(self, statelog: StateLog, mcp_servers: list[McpServerSpec]) -> None:
        settings = self.settings
        self._providers = providers = self._make_providers(statelog.instance_id)
        unreconciled = reconcile_at_start(statelog, providers)
        self._publisher = Publisher(lambda: Outbox(self._zmq, self._outbox_endpoint))
        entries = statelog.workspaces()
        active = [entry.record.id for entry in entries if entry.record.state in ACTIVE_STATES]
        # Only the default provider keeps a pool: warm E2B sandboxes kept "just in case" a
        # fallback is needed would be paid for all day.
        pooled = settings.default_provider if settings.warm_pool_size > 0 else None
        pools = {name: Pool(settings.warm_pool_size) for name in providers if name == pooled}
        unwanted = adopt_pool_members(settings, entries, pools)
        credentials = CredentialStore(statelog, settings.github_app_encryption_key)
        problem = credentials.check()
        if problem:  # everything else works; using an App answers the same clear error
            log.error("GitHub App credentials cannot be used: %s", problem)
        github = GitHub(  # a use of a credential is durable in the audit trail before it is answered
            TokenBroker(settings.github_api_url, credentials), lambda used: statelog.submit(used, audit=True).result(30)
        )
        boards = Boards(
            admission=Admission(settings.max_concurrent, active),
            pools=pools,
            sweeps=Sweeps(settings.cleanup_interval_min * 60.0),
        )
        ctx = ActorContext(
            settings=settings,
            statelog=statelog,
            zmq_context=self._zmq,
            outbox_endpoint=self._outbox_endpoint,
            registry=Registry(),
            providers=providers,
            boards=boards,
            processes=ProcessTable(self._publisher.publish),
            unreconciled=unreconciled,
            credentials=credentials,
            github=github,
            mcp=McpHost(mcp_servers, self._mcp_door(statelog)),
        )
        self._supervisor = start_tree(ctx, self._escalated)
        # Serve only once every provider has been checked: Sync is handled after on_start.
        self._supervisor.ask(Sync(), timeout=_START_TIMEOUT_S)
        for name in providers:
            ref = ctx.registry.get(provider_name(name))
            if ref is not None:
                ref.ask(Sync(), timeout=_START_TIMEOUT_S)
        for workspace_id, reason in unwanted:
            ctx.deliver(workspace_id, DestroyWorkspace(None, reason=reason))
        self._ctx = ctx
        self._router.serve(ctx)  # requests are served from here on
        ctx.registry.tell(POOL, Refill())  # the providers' health is known now: fill without waiting for a tick
        if ctx.mcp is not None:  # they are clients of the runtime: after it serves
            self._mcp = ctx.mcp
            ctx.mcp.start()

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
        if self._mcp is not None:  # while the runtime still serves them: their servers' stdin is closed
            self._mcp.stop()
            self._mcp = None
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
        if self._mcp is not None:
            self._mcp.stop()
            self._mcp = None
        if self._http is not None:  # its requests in flight were answered by the drain above
            self._http.stop()
            self._http = None
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
        for callback in self._stop_callbacks:  # e.g. an HTTP app mounted by the host closes its sockets
            try:
                callback()
            except Exception:
                log.exception("a stop callback failed")
        self._stop_callbacks.clear()
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
    def context(self) -> ActorContext | None:
        """The actors' shared machinery while they run (for embedding hosts and tests)."""
        return self._ctx

    @property
    def supervisor(self) -> pykka.ActorRef[Any] | None:
        """The root of the supervision tree while it runs."""
        return self._supervisor

    @property
    def metrics_address(self) -> str:
        """``host:port`` of the metrics endpoint as bound (empty when off)."""
        return self._metrics.address

    @property
    def http_address(self) -> str:
        """``host:port`` of the HTTP API as bound (empty when off)."""
        return "" if self._http is None else self._http.address

    @property
    def zmq_context(self) -> zmq.Context[zmq.Socket[bytes]]:
        """The ZeroMQ context of the Gateway (``inproc://`` endpoints need this very one)."""
        return self._zmq

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called once when the runtime stops, before its ZeroMQ context closes."""
        self._stop_callbacks.append(callback)

    def events_after(self, seq: int, limit: int) -> list[AnyEvent]:
        """Up to ``limit`` recorded events with a ``seq`` above ``seq``, oldest first."""
        statelog = self._statelog
        if statelog is None:
            return []
        return list(islice(statelog.events(seq), limit))

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
        return Subscriber(self.inproc_events_endpoint, topics, token=self.token, context=self._zmq)
