"""The workspace agent, and the runtime's side of it, shared by every provider.

``program`` is the agent itself: one stdlib-only file sent whole into each workspace.
``channel`` is the runtime's end of one agent's connection, ``agents`` keeps every
workspace's agent running, ``calls`` speaks the agent's requests in the runtime's terms,
and ``executor`` puts them together as a provider's ``Commands``: the agent first, the
provider's fallback second. ``files`` holds the rules file operations follow either way.
"""

from runtime.agent.channel import AGENT_ARGV, AgentChannel, AgentGone
from runtime.agent.executor import AgentExecutor, Fallback

__all__ = ["AGENT_ARGV", "AgentChannel", "AgentExecutor", "AgentGone", "Fallback"]
