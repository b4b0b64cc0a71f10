"""What workspaces may take: capacity slots, the warm pools, and resources resolved from defaults."""

from runtime.capacity.admission import Admission
from runtime.capacity.pool import Pool, PoolStats
from runtime.capacity.resources import new_workspace_id, resolve_create

__all__ = ["Admission", "Pool", "PoolStats", "new_workspace_id", "resolve_create"]
