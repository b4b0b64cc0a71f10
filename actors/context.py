"""What every actor of one runtime shares, handed to each at construction."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka
import zmq

from actors.names import workspace_name
from actors.supervision import Registry
from runtime.config import Settings
from runtime.errors import Conflict, InternalError, WorkspaceError
from runtime.github import CredentialStore, GitHub
from runtime.mcp import McpHost
from runtime.messages import AlertCleared, AlertRaised, Completed, Event, GithubCredentialUsed, ReplyTo
from runtime.monitoring.boards import Boards
from runtime.providers.base import Provider
from runtime.state.processes import ProcessTable
from runtime.state.statelog import StateLog
from runtime.wire.outbox import Outbox

__all__ = ["ActorContext"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorContext:
    """The runtime's shared machinery.

    Attributes:
        settings: The effective configuration.
        statelog: The LMDB state log (its writer thread owns all writes).
        zmq_context: The ZeroMQ context inproc outboxes must share with the Gateway.
        outbox_endpoint: The Gateway's inproc PULL endpoint.
        registry: The supervisors' name table.
        providers: The provider adapters by name.
        boards: What the actors learn, for anyone to read (health, usage, pools, slots...).
        processes: The streamed processes of every workspace.
        unreconciled: Providers that could not be reconciled at start (they were down);
            each one's ProviderActor finishes the job when the provider first answers.
        credentials: The GitHub Apps and their sealed keys.
        github: Clones with the Apps' installation tokens.
        mcp: The MCP servers (``None`` in a runtime built without them).
    """

    settings: Settings
    statelog: StateLog
    zmq_context: zmq.Context[zmq.Socket[bytes]]
    outbox_endpoint: str
    registry: Registry
    providers: Mapping[str, Provider]
    boards: Boards
    processes: ProcessTable
    unreconciled: set[str] = field(default_factory=set)
    credentials: CredentialStore | None = None
    github: GitHub | None = None
    mcp: McpHost | None = None

    def github_apps(self) -> tuple[CredentialStore, GitHub]:
        """The GitHub machinery (``Conflict`` in a runtime built without it)."""
        if self.credentials is None or self.github is None:
            raise Conflict("this runtime has no GitHub App support")
        return self.credentials, self.github

    def audit(self, event: GithubCredentialUsed) -> None:
        """Record a use of a credential in the audit trail (and publish it); does not wait."""
        self.statelog.submit(event, audit=True)

    def deliver(self, workspace_id: str, message: Any) -> None:
        """Tell the workspace's actor ``message``, starting one if none runs.

        Raises:
            ProviderUnavailable: The runtime is stopping.
        """
        self.registry.deliver(workspace_name(workspace_id), message)

    def publish(self, event: Event | None) -> None:
        """Write ``event`` to the state log, which publishes it (no-op for ``None``); does not wait."""
        if event is not None:
            self.statelog.submit(event)

    def alert(self, event: AlertRaised | AlertCleared | None) -> None:
        """Log and publish an alert raised or cleared (no-op for ``None``)."""
        if event is None:
            return
        if isinstance(event, AlertRaised):
            log.warning("alert %s: %s", event.key, event.message)
        else:
            log.info("alert %s cleared: %s", event.key, event.message)
        self.publish(event)

    def outbox(self) -> Outbox:
        """A new outbox for the calling thread."""
        return Outbox(self.zmq_context, self.outbox_endpoint)

    def run_blocking(
        self,
        actor: pykka.ActorRef[Any],
        kind: str,
        reply_to: ReplyTo | None,
        call: Callable[[], object],
    ) -> None:
        """Run a blocking ``call`` on its own thread and tell ``actor`` how it ended.

        The actor's mailbox stays free meanwhile. If the actor is gone when the call
        ends, the waiting client still gets an answer through a one-off outbox. A request
        the Router journaled runs only once its journal entry is durable.
        """

        def work() -> None:
            value: object = None
            error: BaseException | None = None
            try:
                if reply_to is not None:
                    self.statelog.journal.wait(reply_to.key)
                value = call()
            except WorkspaceError as exc:
                error = exc
            except Exception as exc:
                log.exception("%s call failed unexpectedly", kind)
                error = InternalError(f"{kind} failed: {exc!r}")
            try:
                actor.tell(Completed(kind, reply_to, value, error))
            except pykka.ActorDeadError:
                self._answer_orphan(kind, reply_to)

        threading.Thread(target=work, name=f"blocking-{kind}", daemon=True).start()

    def _answer_orphan(self, kind: str, reply_to: ReplyTo | None) -> None:
        if reply_to is None:
            return
        try:
            outbox = self.outbox()
        except zmq.ZMQError:
            return  # the runtime has shut down; the client will time out
        try:
            error = InternalError(
                f"the workspace actor stopped before its {kind} finished; its outcome is unknown: check the "
                "workspace, then send the request again with a new id"
            )
            outbox.fail(reply_to, error)
        finally:
            outbox.close()
