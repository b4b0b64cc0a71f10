"""In-memory fakes of collaborators, for the fast test tier only."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from runtime.errors import Conflict, NotFound, ProviderUnavailable
from runtime.messages import BackendState, Command, ContainerEvent, ExecResult, Probe, ResourceUsage, WorkspaceSpec
from runtime.providers.base import ProcessSink
from tests.fake_mcp import FakeMcpServer


class FakeWatch:
    """An event stream fed by the test through ``FakeProvider.emit``."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[ContainerEvent | None] = queue.SimpleQueue()

    def __iter__(self) -> Iterator[ContainerEvent]:
        while (event := self.events.get()) is not None:
            yield event
        raise ProviderUnavailable("fake event stream closed")

    def close(self) -> None:
        self.events.put(None)


@dataclass
class FakeProvider:
    """A provider whose workspaces are dict entries; exec echoes its argv.

    It is its own ``commands``.

        ``gate`` (when set) makes every exec wait for it, to hold a call in flight.
        ``fail_create`` makes create raise; ``healthy`` drives the probe; ``disk`` is what
        ``disk_usage`` reports per handle; ``emit`` pushes a backend event. A spawned process
        writes its argv to stderr and echoes its stdin to stdout; it exits 0 when its stdin
        closes and 128 + the signal when killed. A process started as ``fake-mcp`` is an MCP
        server instead (``tests.fake_mcp.FakeMcpServer``, in ``mcp_servers`` by process key).
    """

    name: str = "gvisor"
    healthy: bool = True
    fail_create: Exception | None = None
    gate: threading.Event | None = None
    workspaces: dict[str, WorkspaceSpec] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    disk: dict[str, int] = field(default_factory=dict)
    exec_started: threading.Event = field(default_factory=threading.Event)
    cancelled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    watches: list[FakeWatch] = field(default_factory=list)
    created: int = 0
    boot_gate: threading.Event | None = None
    last_env: dict[str, str] = field(default_factory=dict)
    watching: threading.Event = field(default_factory=threading.Event)
    execs: int = 0
    renewals: list[dict[str, float | None]] = field(default_factory=list)
    usage: dict[str, ResourceUsage] = field(default_factory=dict)
    processes: dict[str, ProcessSink] = field(default_factory=dict)
    mcp_servers: dict[str, FakeMcpServer] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    closed: bool = False

    @property
    def commands(self) -> FakeProvider:
        return self

    def probe(self) -> Probe:
        return Probe(self.healthy, "fake", "" if self.healthy else "fake provider switched off")

    def create(self, spec: WorkspaceSpec) -> str:
        if self.boot_gate is not None:
            self.boot_gate.wait(30)
        if self.fail_create is not None:
            raise self.fail_create
        if not self.healthy:
            raise ProviderUnavailable("fake provider switched off")
        with self.lock:
            self.workspaces[f"fake-{spec.workspace_id}"] = spec
            self.created += 1
        return f"fake-{spec.workspace_id}"

    def exec(self, handle: str, command: Command) -> ExecResult:
        self.exec_started.set()
        self.last_env = dict(command.env)
        self.execs += 1
        if self.gate is not None:
            self.gate.wait(30)
        with self.lock:
            if handle not in self.workspaces:
                raise NotFound(f"no workspace {handle}")
        return ExecResult(exit_code=0, stdout=" ".join(command.argv).encode(), stderr=command.stdin or b"")

    def cancel(self, handle: str) -> None:
        self.cancelled.append(handle)

    def destroy(self, handle: str) -> None:
        with self.lock:
            self.workspaces.pop(handle, None)

    def inventory(self) -> dict[str, BackendState]:
        if not self.healthy:
            raise ProviderUnavailable("fake provider switched off")
        with self.lock:
            return {
                spec.workspace_id: BackendState(
                    workspace_id=spec.workspace_id,
                    handle=handle,
                    running=handle not in self.stopped,
                    detail="" if handle not in self.stopped else "the workspace's container exited with code 1",
                )
                for handle, spec in self.workspaces.items()
            }

    def renew(self, expiries: Mapping[str, float | None]) -> None:
        self.renewals.append(dict(expiries))

    def watch(self) -> FakeWatch:
        watch = FakeWatch()
        self.watches.append(watch)
        self.watching.set()
        return watch

    def emit(self, event: ContainerEvent) -> None:
        assert self.watching.wait(5), "the provider actor never started watching"
        self.watches[-1].events.put(event)

    def disk_usage(self, handles: list[str]) -> dict[str, int]:
        return {handle: self.disk[handle] for handle in handles if handle in self.disk}

    def resource_usage(self, handles: list[str]) -> dict[str, ResourceUsage]:
        return {handle: self.usage[handle] for handle in handles if handle in self.usage}

    def read_file(self, handle: str, path: str) -> bytes:
        with self.lock:
            if handle not in self.workspaces:
                raise NotFound(f"no workspace {handle}")
            data = self.files.get((handle, path))
        if data is None:
            raise NotFound(f"no such file: {path}")
        return data

    def write_file(self, handle: str, path: str, data: bytes, mode: int | None) -> None:
        with self.lock:
            if handle not in self.workspaces:
                raise NotFound(f"no workspace {handle}")
            self.files[(handle, path)] = data

    def spawn(self, handle: str, key: str, command: Command, sink: ProcessSink) -> int:
        with self.lock:
            if handle not in self.workspaces:
                raise NotFound(f"no workspace {handle}")
            self.processes[key] = sink
            pid = 100 + len(self.processes)
            if command.argv[:1] == ["fake-mcp"]:
                self.mcp_servers[key] = FakeMcpServer()
        sink.output("stderr", " ".join(command.argv).encode())
        if command.stdin:
            sink.output("stdout", command.stdin)
        if not command.stdin_open:
            self._end(key, 0)
        return pid

    def write_stdin(self, handle: str, key: str, data: bytes, close: bool) -> None:
        with self.lock:
            sink = self.processes.get(key)
        if sink is None:
            raise Conflict(f"process {key} is not running")
        server = self.mcp_servers.get(key)
        if server is not None and data:
            now, held = server.feed(data)
            if now:
                sink.output("stdout", now)
            for release, answer in held:
                threading.Thread(target=lambda r=release, a=answer: r.wait(30) and sink.output("stdout", a)).start()
        elif data:
            sink.output("stdout", data)
        if close:
            self._end(key, 0)

    def kill(self, handle: str, key: str, signal: int) -> None:
        if not self._end(key, 128 + signal):
            raise Conflict(f"process {key} is not running")

    def close(self) -> None:
        self.closed = True
        for key in list(self.processes):
            self._end(key, None)

    def _end(self, key: str, exit_code: int | None) -> bool:
        with self.lock:
            sink = self.processes.pop(key, None)
        if sink is not None:
            sink.exited(exit_code, False, 1.0, None if exit_code is not None else "the provider closed")
        return sink is not None
