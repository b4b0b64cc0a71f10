"""The SDK boundary of the E2B stand-in: ``attach`` gives a real ``e2b.Sandbox`` a working envd.

The adapter under test gets its ``e2b.Sandbox`` objects from the real SDK, talking to the
stand-in control plane; their envd half (commands, files, the health probe behind
``is_running``) would go to ``https://49983-<id>.<domain>``, which does not exist here.
``attach`` swaps that half for fakes working on the sandbox's Docker container, found by
its label: no state is shared with the ``ControlPlane``, which may run in another process.

What is replaced: ``sandbox.commands`` (``StandInCommands``), ``sandbox.files``
(``StandInFilesystem``), the deprecated ``sandbox.git`` (rebuilt on the new commands) and
the envd HTTP client behind ``sandbox.is_running()`` (its ``/health`` answered as E2B's
proxy does: 204 while the sandbox runs, 502 "... was not found" once it is paused or gone).
``sandbox.pty`` and ``files.watch_dir`` are not served: using them raises
``NotImplementedError``.
"""

from __future__ import annotations

from typing import Any

import httpx
from e2b import Sandbox
from e2b.envd.api import ENVD_API_HEALTH_ROUTE
from e2b.sandbox_sync.git import Git

from tests.e2b_standin.commands import StandInCommandHandle, StandInCommands, Unserved
from tests.e2b_standin.containers import SandboxContainer
from tests.e2b_standin.filesystem import StandInFilesystem

__all__ = ["StandInCommandHandle", "StandInCommands", "StandInFilesystem", "attach"]


def _health(target: SandboxContainer) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path != ENVD_API_HEALTH_ROUTE:
            return httpx.Response(404, json={"code": 404, "message": "the E2B stand-in serves only /health here"})
        if target.state() == "running":
            return httpx.Response(204)
        return httpx.Response(502, json={"code": 502, "message": target.gone_message, "sandboxId": target.sandbox_id})

    return httpx.MockTransport(answer)


def attach(sandbox: Sandbox, *, client: Any = None) -> Sandbox:
    """Make ``sandbox``'s commands, files and ``is_running`` work on its stand-in container; return it."""
    target = SandboxContainer(sandbox.sandbox_id, client)
    config = sandbox.connection_config
    commands = StandInCommands(target, sandbox._envd_version, config)
    sandbox._commands = commands
    sandbox._filesystem = StandInFilesystem(target, sandbox._envd_version, config)
    sandbox._git = Git(commands)
    sandbox._pty = Unserved("sandbox.pty")  # type: ignore[assignment]
    sandbox._envd_api = httpx.Client(base_url=sandbox.envd_api_url, transport=_health(target))
    return sandbox
