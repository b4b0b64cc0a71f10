"""What the runtime knows: the state log, its reconciliation, and the streamed processes.

``statelog`` is the durable LMDB log of what the runtime promised; ``reconcile``
converges it with what the providers show; ``processes`` is the in-memory table of
streamed processes and the output kept for them.
"""

from runtime.state.processes import ProcessTable
from runtime.state.reconcile import reconcile_at_start
from runtime.state.statelog import StateLog

__all__ = ["ProcessTable", "StateLog", "reconcile_at_start"]
