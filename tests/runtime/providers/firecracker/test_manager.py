"""The firecracker manager's socket protocol, with the VM-owning side replaced by a fake.

Real sockets, real descriptor passing; ``FakeMachines`` records calls and answers like
``Machines`` (the real one runs against the stand-in in ``tests/integration/test_firecracker.py``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from runtime.errors import NotFound, ProviderUnavailable
from runtime.messages import ResourceUsage
from runtime.providers.firecracker.machines import Machines
from runtime.providers.firecracker.manager import ManagerClient, ManagerServer
from runtime.providers.firecracker.records import MachineSpec, MachineState

SPEC = MachineSpec(
    workspace_id="ws_abc", instance="inst", image="img", vcpus=1, cpu_quota=0.5, memory_mib=256, disk_bytes=1 << 30
)


class FakeMachines:
    """Answers like ``Machines``; ``connect`` hands out one end of a socket pair."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.problems = ["firecracker binary not found at /nowhere"]
        self.started = 0
        self.peers: list[socket.socket] = []

    def probe(self) -> list[str]:
        return list(self.problems)

    def start(self) -> None:
        self.started += 1

    def version(self) -> str | None:
        return "Firecracker v1.10.1"

    def create(self, spec: MachineSpec) -> None:
        self.calls.append(("create", spec))
        if spec.image == "missing":
            raise NotFound("image missing not found")

    def destroy(self, workspace_id: str) -> None:
        self.calls.append(("destroy", workspace_id))

    def states(self) -> list[MachineState]:
        return [MachineState(workspace_id="ws_abc", instance="inst", running=True)]

    def connect(self, workspace_id: str, port: int) -> socket.socket:
        if workspace_id != "ws_abc":
            raise ProviderUnavailable("nothing listens on vsock port 52 in the guest (yet)", retryable=True)
        ours, theirs = socket.socketpair()
        self.peers.append(ours)
        ours.sendall(f"hello from port {port}\n".encode())
        return theirs

    def usage(self, workspace_ids: list[str]) -> dict[str, ResourceUsage]:
        return {workspace_id: ResourceUsage(1.5, 1024) for workspace_id in workspace_ids}

    def disk_usage(self, workspace_ids: list[str]) -> dict[str, int]:
        return {workspace_id: 4096 for workspace_id in workspace_ids}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FakeMachines, ManagerClient, Path]]:
    machines = FakeMachines()
    path = tmp_path / "manager.sock"
    server = ManagerServer(path, cast(Machines, machines)).start()
    try:
        yield machines, ManagerClient(path), path
    finally:
        server.stop()
        for peer in machines.peers:
            peer.close()
    assert not path.exists()


def test_every_call_reaches_the_machines_and_answers_in_their_types(
    served: tuple[FakeMachines, ManagerClient, Path],
) -> None:
    machines, client, path = served
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert client.probe() == ["firecracker binary not found at /nowhere"]
    assert client.version() == "Firecracker v1.10.1"
    client.create(SPEC)
    client.destroy("ws_abc")
    assert machines.calls == [("create", SPEC), ("destroy", "ws_abc")]
    assert client.states() == [MachineState(workspace_id="ws_abc", instance="inst", running=True)]
    assert client.usage(["ws_abc"]) == {"ws_abc": ResourceUsage(1.5, 1024)}
    assert client.disk_usage(["ws_abc"]) == {"ws_abc": 4096}


def test_a_connection_is_handed_over_as_a_descriptor_and_stays_open_after_the_manager_closes_its_copy(
    served: tuple[FakeMachines, ManagerClient, Path],
) -> None:
    machines, client, _ = served
    with client.connect("ws_abc", 52) as stream:
        stream.settimeout(5)
        assert stream.recv(100) == b"hello from port 52\n"
        stream.sendall(b"back")
        assert machines.peers[0].recv(10) == b"back"


def test_errors_keep_their_family_and_retry_hint_across_the_socket(
    served: tuple[FakeMachines, ManagerClient, Path],
) -> None:
    _, client, _ = served
    with pytest.raises(NotFound, match="image missing not found"):
        client.create(msgspec.structs.replace(SPEC, image="missing"))
    with pytest.raises(ProviderUnavailable) as refused:
        client.connect("ws_other", 52)
    assert refused.value.retryable


def test_malformed_requests_get_a_bad_request_and_the_manager_keeps_serving(
    served: tuple[FakeMachines, ManagerClient, Path],
) -> None:
    _, client, path = served
    for line in (
        b"not json\n",
        b'{"op": 3}\n',
        b'{"op": "reboot"}\n',
        b'{"op": "destroy", "args": {"workspace_id": 1}}\n',
        b'{"op": "connect", "args": {"workspace_id": "ws_abc", "port": "52"}}\n',
        b'{"op": "connect", "args": {"workspace_id": "ws_abc", "port": 0}}\n',
        b'{"op": "create", "args": {"spec": {"workspace_id": "ws_x"}}}\n',
    ):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(line)
            answer = sock.makefile("rb").readline()
        assert b'"ok":false' in answer and b'"bad_request"' in answer, (line, answer)
    assert client.states()[0].workspace_id == "ws_abc"


def test_an_unreachable_manager_is_an_unhealthy_probe_not_an_exception(tmp_path: Path) -> None:
    client = ManagerClient(tmp_path / "nobody.sock")
    (problem,) = client.probe()
    assert "firecracker manager" in problem and "not reachable" in problem
    with pytest.raises(ProviderUnavailable, match="not reachable"):
        client.states()


def test_a_socket_group_makes_the_socket_usable_by_that_group(tmp_path: Path) -> None:
    path = tmp_path / "group.sock"
    server = ManagerServer(path, cast(Machines, FakeMachines()), group="root").start()
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o660" and path.stat().st_gid == 0
    finally:
        server.stop()


def test_concurrent_requests_are_served_side_by_side(served: tuple[FakeMachines, ManagerClient, Path]) -> None:
    _, client, _ = served
    errors: list[BaseException] = []

    def call() -> None:
        try:
            for _ in range(20):
                assert client.disk_usage(["ws_abc"]) == {"ws_abc": 4096}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_the_manager_readies_the_host_once_its_probe_finds_nothing_missing(
    served: tuple[FakeMachines, ManagerClient, Path],
) -> None:
    machines, client, _ = served
    assert client.probe() and machines.started == 0  # nothing is set up while a piece is missing
    machines.problems = []
    assert client.probe() == [] and client.probe() == []
    assert machines.started == 1
