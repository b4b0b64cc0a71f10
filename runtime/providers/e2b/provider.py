"""The ``e2b`` provider: workspaces as sandboxes in E2B's cloud, through the ``e2b`` SDK.

- ``create``: ``Sandbox.create`` from the workspace's image, which names an E2B template
  (``WORKSPACE_E2B_TEMPLATE`` when the create names none), with the workspace's env, and
  metadata carrying the workspace id, this runtime's instance and the labels (the same
  keys the Docker provider puts on containers); the idempotency key is the workspace id,
  so a create retried after a crash finds its sandbox. Then ``/workspace`` is made.
  CPU, memory and disk are the template's (E2B fixes them when a template is built):
  the record keeps what was asked for.
- The sandbox's E2B timeout follows the workspace's expiry (``renew``, at every health
  check and at once after an ``extend``): it ends when the workspace expires, or, for
  longer and persistent workspaces, ``WORKSPACE_E2B_MAX_TIMEOUT_S`` from now and is renewed
  before it comes. A sandbox whose timeout passes while the runtime is down is paused by
  E2B (``lifecycle`` ``on_timeout: pause``), not killed: the next use resumes it, and the
  reaper kills it when its workspace expires.
- ``destroy``: ``kill``. ``inventory``: ``Sandbox.list`` with a metadata query, every
  page (a paused sandbox counts as present). Health: no key is unhealthy without a
  network call; with a key, a one-item listing decides.
- Events: E2B has no event stream; a sandbox a call finds gone is reported at once as a
  ``vanished`` event, and the health check's inventory catches the rest.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Iterator, Mapping

from runtime.config import Settings
from runtime.errors import ProviderUnavailable, WorkspaceError
from runtime.messages import BackendState, ContainerEvent, Probe, ResourceUsage, WorkspaceSpec
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED
from runtime.providers.e2b.api import E2BApi, E2BParams
from runtime.providers.e2b.commands import USER, E2BCommands
from runtime.providers.e2b.errors import REJECTED_KEY, translated

__all__ = ["E2BProvider", "e2b_in_use", "e2b_provider"]

_NO_KEY = "E2B_API_KEY not set: the e2b provider needs an E2B API key"
_TOLERANCE_S = 5.0  # a timeout already within this of the wanted end is left alone


class _Events:
    """The provider's event stream: what its calls found (``EventWatch``)."""

    def __init__(self, source: queue.Queue[ContainerEvent | None]) -> None:
        self._queue = source

    def __iter__(self) -> Iterator[ContainerEvent]:
        while (event := self._queue.get()) is not None:
            yield event

    def close(self) -> None:
        self._queue.put(None)


class E2BProvider:
    """Workspaces as E2B sandboxes.

    Args:
        instance_id: This runtime's instance (on every sandbox's metadata).
        api: The control plane, with its key (none: the provider is unhealthy, saying so).
        max_timeout_s: ``WORKSPACE_E2B_MAX_TIMEOUT_S``.

    ``e2b_provider`` builds one from the settings.
    """

    name = "e2b"

    def __init__(self, *, instance_id: str, api: E2BApi, max_timeout_s: int = 3600) -> None:
        self._instance_id = instance_id
        self._api_key = api.params.api_key
        self._api = api
        self._max_timeout_s = max_timeout_s
        self._lock = threading.Lock()
        self._ends: dict[str, float] = {}  # sandbox -> when its E2B timeout ends, as last set or seen
        self._workspaces: dict[str, str] = {}  # sandbox -> workspace id
        self._events: queue.Queue[ContainerEvent | None] = queue.Queue()
        self._commands = E2BCommands(self._api, self._gone)

    @property
    def where(self) -> str:
        """The URL of the E2B API this provider uses."""
        return self._api.params.where

    @property
    def commands(self) -> E2BCommands:
        """What runs inside the sandboxes."""
        return self._commands

    def _metadata_query(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_INSTANCE: self._instance_id}

    def _gone(self, handle: str, detail: str) -> None:
        with self._lock:
            workspace_id = self._workspaces.pop(handle, None)
            self._ends.pop(handle, None)
        if workspace_id is not None:
            self._events.put(ContainerEvent(workspace_id, "vanished", detail))

    # ------------------------------------------------------------------ health

    def probe(self) -> Probe:
        """No key: unhealthy at once. A key: one authenticated listing of one sandbox decides."""
        if not self._api_key:
            return Probe(False, "e2b", _NO_KEY)
        where = self.where
        try:
            list(self._api.list(self._metadata_query(), limit=1))
        except WorkspaceError as exc:
            if REJECTED_KEY in exc.message:
                return Probe(False, "e2b", f"{REJECTED_KEY} at {where}: check E2B_API_KEY")
            return Probe(False, "e2b", f"E2B API at {where} does not answer: {exc.message}")
        return Probe(True, "e2b", f"E2B API at {where} accepted the key")

    # ------------------------------------------------------------------ lifecycle

    def create(self, spec: WorkspaceSpec) -> str:
        """A sandbox for ``spec`` with ``/workspace`` made; its id is the handle."""
        if not self._api_key:
            raise ProviderUnavailable(_NO_KEY, retryable=False)
        metadata = {**spec.labels, LABEL_MANAGED: "true", LABEL_ID: spec.workspace_id}
        metadata[LABEL_INSTANCE] = self._instance_id
        sandbox = self._api.create(
            template=spec.image,
            timeout_s=self._max_timeout_s,
            metadata=metadata,
            envs=spec.env,
            idempotency_key=spec.workspace_id.replace("_", "-").lower(),
        )
        handle = str(sandbox.sandbox_id)
        with self._lock:
            self._ends[handle] = time.time() + self._max_timeout_s
            self._workspaces[handle] = spec.workspace_id
        self._commands.remember(handle, sandbox)
        try:
            with translated(f"making /workspace in sandbox {handle}"):
                sandbox.commands.run("mkdir -p /workspace", user=USER, timeout=60)
        except WorkspaceError:
            with contextlib.suppress(WorkspaceError):  # the first error is the one to tell (an orphan is reaped)
                self.destroy(handle)  # a sandbox without its /workspace is of no use
            raise
        return handle

    def destroy(self, handle: str) -> None:
        """Kill the sandbox; one E2B no longer knows is not an error."""
        self._commands.cancel(handle)
        self._api.kill(handle)
        self._commands.forget(handle)
        with self._lock:
            self._ends.pop(handle, None)
            self._workspaces.pop(handle, None)

    def inventory(self) -> dict[str, BackendState]:
        """This runtime's sandboxes (running or paused), by workspace id."""
        found: dict[str, BackendState] = {}
        ends: dict[str, float] = {}
        for info in self._api.list(self._metadata_query()):
            workspace_id = info.metadata.get(LABEL_ID)
            if not workspace_id:
                continue
            handle = str(info.sandbox_id)
            state = str(getattr(info.state, "value", info.state))
            found[workspace_id] = BackendState(workspace_id=workspace_id, handle=handle, running=True,
                                               detail="" if state == "running" else f"sandbox is {state}")  # fmt: skip
            if state == "running":
                ends[handle] = info.end_at.timestamp()
        with self._lock:
            self._ends.update(ends)
            self._workspaces.update({state.handle: workspace_id for workspace_id, state in found.items()})
        return found

    def renew(self, expiries: Mapping[str, float | None]) -> None:
        """Keep each sandbox's E2B timeout in step with its workspace's expiry (by handle).

        The wanted end is the expiry, or ``WORKSPACE_E2B_MAX_TIMEOUT_S`` from now when the
        expiry is later (or never): then it is renewed once less than half of that is
        left, so a long-lived sandbox costs one call per half-period.
        """
        now = time.time()
        for handle, expires_at in expiries.items():
            with self._lock:
                current = self._ends.get(handle)
            cap = now + self._max_timeout_s
            if expires_at is None or expires_at > cap:
                if current is not None and current - now > self._max_timeout_s / 2:
                    continue
                wanted = cap
            else:
                wanted = expires_at
                if current is not None and abs(current - wanted) <= _TOLERANCE_S:
                    continue
            timeout_s = max(1, math.ceil(wanted - now))
            try:
                self._api.set_timeout(handle, timeout_s)
            except WorkspaceError:
                continue  # the next health check tries again; a gone sandbox shows in its inventory
            with self._lock:
                self._ends[handle] = now + timeout_s

    def watch(self) -> _Events:
        """Sandboxes the adapter's calls found gone (E2B itself has no event stream)."""
        return _Events(self._events)

    def disk_usage(self, handles: list[str]) -> dict[str, int]:
        """Not measured: E2B bounds a sandbox's disk by its template."""
        return {}

    def resource_usage(self, handles: list[str]) -> dict[str, ResourceUsage]:
        """Not measured cheaply (E2B's metrics are one API call per sandbox)."""
        return {}

    def close(self) -> None:
        """Stop following processes; the sandboxes keep running."""
        self._commands.close()


def e2b_in_use(settings: Settings) -> bool:
    """Whether the runtime builds the ``e2b`` provider: it is the default or a fallback, or a key is set."""
    return bool(settings.e2b_api_key) or "e2b" in (settings.default_provider, *settings.fallback_providers)


def e2b_provider(settings: Settings, instance_id: str, api: type[E2BApi] = E2BApi) -> E2BProvider:
    """The ``e2b`` provider ``settings`` describe, its control plane an ``api`` (tests pass a stand-in's)."""
    params = E2BParams(api_key=settings.e2b_api_key or "", domain=settings.e2b_domain, api_url=settings.e2b_api_url)
    return E2BProvider(instance_id=instance_id, api=api(params), max_timeout_s=settings.e2b_max_timeout_s)
