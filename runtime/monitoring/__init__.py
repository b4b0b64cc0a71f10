"""What the runtime measures, knows and tells operators.

``boards`` hold what the actors learn (provider health, usage, samples, sweeps, pools,
capacity), read by anyone; ``sampler`` measures the host and the workspaces;
``alerts`` and ``thresholds`` turn measurements into alerts raised and cleared;
``stats`` and ``metrics`` report the boards; ``doctor`` checks a host against the
troubleshooting list; ``logs`` formats log lines.
"""

from runtime.monitoring.alerts import AlertBoard
from runtime.monitoring.boards import Boards, ProviderBoard, SampleBoard, Sweeps, Usage, UsageBoard

__all__ = ["AlertBoard", "Boards", "ProviderBoard", "SampleBoard", "Sweeps", "Usage", "UsageBoard"]
