"""In-memory fakes of collaborators, for the fast test tier only."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from runtime.errors import NotFound, ProviderUnavailable
from runtime.messages import ExecResult, WorkspaceSpec
from runtime.providers.base import Probe


@dataclass
class FakeProvider:
    """A provider whose workspaces are dict entries; exec echoes its argv.

    ``gate`` (when set) makes every exec wait for it, to hold a call in flight.
    ``fail_create`` makes create raise; ``healthy`` drives the probe.
    """

    name: str = "gvisor"
    healthy: bool = True
    fail_create: Exception | None = None
    gate: threading.Event | None = None
    workspaces: dict[str, WorkspaceSpec] = field(default_factory=dict)
    exec_started: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self) -> Probe:
        return Probe(self.healthy, "fake", "" if self.healthy else "fake provider switched off")

    def create(self, spec: WorkspaceSpec) -> str:
        if self.fail_create is not None:
            raise self.fail_create
        if not self.healthy:
            raise ProviderUnavailable("fake provider switched off")
        with self.lock:
            self.workspaces[f"fake-{spec.workspace_id}"] = spec
        return f"fake-{spec.workspace_id}"

    def exec(
        self,
        handle: str,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bytes | None,
        timeout_s: float | None,
    ) -> ExecResult:
        self.exec_started.set()
        if self.gate is not None:
            self.gate.wait(30)
        with self.lock:
            if handle not in self.workspaces:
                raise NotFound(f"no workspace {handle}")
        return ExecResult(exit_code=0, stdout=" ".join(argv).encode(), stderr=stdin or b"")

    def destroy(self, handle: str) -> None:
        with self.lock:
            self.workspaces.pop(handle, None)
