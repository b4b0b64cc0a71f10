"""The wire: how requests and events travel between clients and the runtime.

``gateway`` is the thread owning every ZeroMQ socket (decode, authenticate, route,
reply, publish); ``outbox`` is how other threads hand it replies and events, and
``publisher`` the one thread that publishes streamed processes' output; ``dedupe``
answers retried requests from their first reply; ``auth`` keeps the shared token;
``security`` says where the runtime may listen in the clear and how clients connect,
``keys`` keeps the CURVE key files and ``zap`` decides who completes a handshake.
``client``, ``subscriber``, ``streams`` (a process's output in order) and ``events`` (the
runtime's events in order, re-synced after a gap) are the Python side a client uses.
"""

from runtime.wire.client import Client
from runtime.wire.events import Watch
from runtime.wire.publisher import Publisher
from runtime.wire.streams import follow
from runtime.wire.subscriber import Subscriber

__all__ = ["Client", "Publisher", "Subscriber", "Watch", "follow"]
