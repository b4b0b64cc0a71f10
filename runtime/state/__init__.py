"""What the runtime knows: the state log, its reconciliation, the request journal and the streamed processes.

``statelog`` is the durable LMDB log of what the runtime promised; ``reconcile``
converges it with what the providers show; ``journal`` (in the state log's environment)
records the non-idempotent requests each run began, so a later run does not run them
again; ``processes`` is the in-memory table of streamed processes and the output kept for them.
"""

from runtime.state.journal import JOURNALED_OPS, RequestJournal
from runtime.state.processes import ProcessTable
from runtime.state.reconcile import reconcile_at_start
from runtime.state.statelog import StateLog

__all__ = ["JOURNALED_OPS", "ProcessTable", "RequestJournal", "StateLog", "reconcile_at_start"]
