"""The runtime's actors (pykka) and the supervision they run under."""

from actors.context import ActorContext
from actors.provider import ProviderActor
from actors.supervision import ChildActor, ChildSpec, Registry
from actors.supervisor import Supervisor
from actors.workspace import WorkspaceActor

__all__ = ["ActorContext", "ChildActor", "ChildSpec", "ProviderActor", "Registry", "Supervisor", "WorkspaceActor"]
