"""The ``firecracker`` provider over a fake VM host whose "VMs" are the real agent, run locally.

``LocalAgents`` answers ``connect`` like a booted VM's init: one real agent process per
connection, its stdin and stdout the connection. Booting, refusals, inventory and events
are scripted. The real ``Machines`` runs against the stand-in for Firecracker in
``tests/integration/test_firecracker.py``.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from runtime.agent import AGENT_ARGV
from runtime.errors import BadRequest, ProviderUnavailable
from runtime.messages import Command, ResourceUsage, WorkspaceSpec
from runtime.providers.firecracker.provider import FirecrackerProvider, firecracker_in_use
from runtime.providers.firecracker.records import MachineSpec, MachineState
from tests.helpers import poll_until


class LocalAgents:
    """A ``MachineHost`` whose VMs are agent processes on this machine."""

    def __init__(self) -> None:
        self.specs: dict[str, MachineSpec] = {}
        self.running: dict[str, bool] = {}
        self.destroyed: list[str] = []
        self.refusals_left = 0  # connects answered "nothing listens yet" (the VM is booting)
        self.refusal_retryable = True
        self.problems: list[str] = []
        self.started = 0
        self.listed = 0
        self.agents: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def probe(self) -> list[str]:
        return list(self.problems)

    def version(self) -> str | None:
        return "Firecracker v1.10.1"

    def start(self) -> None:
        self.started += 1

    def create(self, spec: MachineSpec) -> None:
        if spec.image == "refused":
            raise BadRequest("image refused has no /usr/bin/python3")
        self.specs[spec.workspace_id] = spec
        self.running[spec.workspace_id] = True

    def destroy(self, workspace_id: str) -> None:
        self.destroyed.append(workspace_id)
        self.stopped(workspace_id, vanished=True)

    def stopped(self, workspace_id: str, *, vanished: bool) -> None:
        """The VM's process ended (``vanished``: and its label went too)."""
        with self._lock:
            if vanished:
                self.running.pop(workspace_id, None)
            else:
                self.running[workspace_id] = False

    def states(self) -> list[MachineState]:
        with self._lock:
            self.listed += 1
            running = dict(self.running)
        return [
            MachineState(
                workspace_id=key,
                instance=self.specs[key].instance,
                running=running,
                detail="" if running else "its firecracker process ended",
            )
            for key, running in running.items()
        ]

    def connect(self, workspace_id: str, port: int) -> socket.socket:
        with self._lock:
            if self.refusals_left:
                self.refusals_left -= 1
                raise ProviderUnavailable("nothing listens on vsock port 52 (yet)", retryable=self.refusal_retryable)
        assert port == 52
        if workspace_id not in self.running:
            raise ProviderUnavailable(f"vsock of {workspace_id}: no such file", retryable=True)
        ours, theirs = socket.socketpair()
        with theirs:
            self.agents.append(subprocess.Popen(AGENT_ARGV, stdin=theirs, stdout=theirs))
        return ours

    def usage(self, workspace_ids: list[str]) -> dict[str, ResourceUsage]:
        return {key: ResourceUsage(0.5, 1 << 20) for key in workspace_ids}

    def disk_usage(self, workspace_ids: list[str]) -> dict[str, int]:
        return {key: 8192 for key in workspace_ids}


def spec(workspace_id: str = "ws_one", image: str = "agent-workspaces/base:bookworm") -> WorkspaceSpec:
    return WorkspaceSpec(
        workspace_id=workspace_id,
        image=image,
        cpu=1.5,
        memory_bytes=300 << 20,
        disk_bytes=2 << 30,
        env={"A": "1"},
        labels={},
    )


@pytest.fixture
def host() -> Iterator[LocalAgents]:
    host = LocalAgents()
    yield host
    for agent in host.agents:
        agent.wait(10)  # every agent ended with its connection


@pytest.fixture
def provider(host: LocalAgents) -> Iterator[FirecrackerProvider]:
    provider = FirecrackerProvider(host, "inst", boot_timeout_s=10, watch_every_s=0.02)
    yield provider
    provider.close()


def test_create_boots_a_vm_sized_from_the_spec_and_returns_once_its_agent_answers(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    host.refusals_left = 5  # still booting for the first five tries
    assert provider.create(spec()) == "ws_one"
    made = host.specs["ws_one"]
    assert (made.vcpus, made.cpu_quota, made.memory_mib, made.disk_bytes) == (2, 1.5, 300, 2 << 30)
    assert (made.instance, made.env) == ("inst", {"A": "1"})
    result = provider.commands.exec("ws_one", Command(argv=["sh", "-c", "echo hi; echo no >&2; exit 4"]))
    assert (result.exit_code, result.stdout, result.stderr, result.via) == (4, b"hi\n", b"no\n", "agent")


def test_a_vm_that_never_answers_is_destroyed_and_the_create_fails_retryably(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    host.refusals_left = 10**6
    quick = FirecrackerProvider(host, "inst", boot_timeout_s=0.3)
    with pytest.raises(ProviderUnavailable, match="the microVM did not come up") as failed:
        quick.create(spec())
    assert failed.value.retryable and host.destroyed == ["ws_one"]
    quick.close()


def test_a_refused_image_is_the_callers_error_and_leaves_nothing(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    with pytest.raises(BadRequest, match="python3"):
        provider.create(spec(image="refused"))
    assert host.destroyed == ["ws_one"] and host.running == {}


def test_destroy_ends_the_agents_connection_and_removes_the_vm(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    provider.create(spec())
    provider.destroy("ws_one")
    assert host.destroyed == ["ws_one"]
    host.agents[0].wait(10)
    with pytest.raises(ProviderUnavailable):
        provider.commands.exec("ws_one", Command(argv=["true"]))


def test_health_lists_every_missing_piece_and_readies_the_host_once_nothing_is(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    host.problems = ["/dev/kvm is missing: this host has no KVM", "firecracker binary not found at firecracker"]
    probe = provider.probe()
    assert not probe.healthy and probe.runtime == "firecracker"
    assert probe.detail == "/dev/kvm is missing: this host has no KVM; firecracker binary not found at firecracker"
    assert host.started == 0
    host.problems = []
    assert provider.probe().healthy and provider.probe().detail == "Firecracker v1.10.1"
    assert host.started == 1


def test_inventory_holds_this_instances_vms_only_and_says_why_one_is_down(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    host.specs["ws_other"] = MachineSpec(
        workspace_id="ws_other", instance="another", image="i", vcpus=1, cpu_quota=1, memory_mib=128, disk_bytes=1
    )
    host.running["ws_other"] = True
    provider.create(spec())
    host.stopped("ws_one", vanished=False)
    (state,) = provider.inventory().values()
    assert (state.workspace_id, state.handle, state.running) == ("ws_one", "ws_one", False)
    assert state.detail == "its firecracker process ended"


def test_the_watch_reports_a_vm_that_died_or_vanished_but_not_one_the_runtime_destroyed(
    provider: FirecrackerProvider, host: LocalAgents
) -> None:
    for workspace_id in ("ws_a", "ws_b", "ws_c"):
        provider.create(spec(workspace_id))
    watch = provider.watch()
    events: list[tuple[str, str]] = []
    reader = threading.Thread(target=lambda: events.extend((e.workspace_id, e.kind) for e in watch))
    reader.start()
    try:
        poll_until(lambda: host.listed >= 1)  # the watch knows them all
        host.stopped("ws_a", vanished=False)
        host.stopped("ws_b", vanished=True)
        provider.destroy("ws_c")
        poll_until(lambda: len(events) >= 2, timeout_s=10)
    finally:
        watch.close()
        reader.join(10)
    assert sorted(events) == [("ws_a", "died"), ("ws_b", "vanished")]


def test_measurements_come_from_the_host(provider: FirecrackerProvider) -> None:
    assert provider.disk_usage(["ws_x"]) == {"ws_x": 8192}
    assert provider.resource_usage(["ws_x"]) == {"ws_x": ResourceUsage(0.5, 1 << 20)}


def test_the_provider_is_built_when_it_is_the_default_a_fallback_or_configured(make_settings) -> None:  # type: ignore[no-untyped-def]
    assert not firecracker_in_use(make_settings())
    assert firecracker_in_use(make_settings(default_provider="firecracker"))
    assert firecracker_in_use(make_settings(fallback_providers=("firecracker",)))
    assert firecracker_in_use(make_settings(firecracker_manager_socket="/run/x.sock"))
