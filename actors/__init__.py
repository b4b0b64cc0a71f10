"""The runtime's actors (pykka), their supervision and the routing of requests to them.

``tree`` says which actors run and under which supervisor; ``routing`` maps each op to
the actor that serves it; ``context`` is what they share. Everything here stands on
``runtime``'s machinery; nothing in ``runtime`` but the app wiring imports it.
"""

from actors.context import ActorContext
from actors.routing import ROUTES, Router
from actors.supervision import ChildActor, ChildSpec, Registry
from actors.supervisor import DynamicSupervisor, Supervisor
from actors.tree import start_tree

__all__ = [
    "ROUTES",
    "ActorContext",
    "ChildActor",
    "ChildSpec",
    "DynamicSupervisor",
    "Registry",
    "Router",
    "Supervisor",
    "start_tree",
]
