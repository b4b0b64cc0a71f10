"""``Machines`` for real, against the stand-in for Firecracker (``tests/firecracker_standin``).

Everything but the VM is real: the root filesystem built from the base image, the data
drive, the guest kernel and initrd from Debian (the stand-in only checks they exist), the
host bridge, taps, NAT and cgroups, Firecracker's API calls (validated by the stand-in
against Firecracker's own Swagger file) and vsock's handshake. The stand-in "boots" the
guest by running its real init, as PID 1 of its own namespaces over the root drive, so
every exec below runs the real agent through the real init. Each test has its own bridge
and subnet and leaves nothing: no process, tap, loop device, mount or file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.agent import AgentChannel, calls
from runtime.app import Runtime
from runtime.errors import ProviderUnavailable
from runtime.messages import Command, ExecResult
from runtime.providers.firecracker import AGENT_PORT, Boot, FirecrackerProvider, Machines, process
from runtime.providers.firecracker.guest import GuestBuild
from runtime.providers.firecracker.network import HostNetwork
from runtime.providers.firecracker.records import MachineSpec, read_record
from runtime.providers.firecracker.rootfs import Rootfs
from tests.conftest import FIRECRACKER_STANDIN, MakeSettings
from tests.helpers import poll_until

pytestmark = pytest.mark.docker

STANDIN = FIRECRACKER_STANDIN
IMAGE = "agent-workspaces/base:bookworm"
ORDER = [
    ("GET", "/"),  # the provider waits for the API to answer
    ("PUT", "/machine-config"),
    ("PUT", "/boot-source"),
    ("PUT", "/drives/rootfs"),
    ("PUT", "/drives/data"),
    ("PUT", "/network-interfaces/eth0"),
    ("PUT", "/vsock"),
    ("PUT", "/actions"),
]


@pytest.fixture(scope="session")
def guest_files(firecracker_guest: GuestBuild) -> Boot:
    """The stand-in with the real guest kernel and initrd."""
    return Boot(firecracker=str(STANDIN), kernel=firecracker_guest.vmlinux, initrd=firecracker_guest.initrd)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rootfs]:
    cache = Rootfs(tmp_path_factory.mktemp("rootfs"))
    cache.ensure(IMAGE)
    yield cache
    cache.prune()


def loop_devices() -> list[str]:
    return subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.fixture
def network() -> HostNetwork:
    """A bridge and subnet of the test's own (the machines fixture tears it down)."""
    return HostNetwork(bridge=f"awft{secrets.token_hex(2)}", subnet=f"172.30.{secrets.randbelow(256)}.0/24")


@pytest.fixture
def machines(tmp_path: Path, guest_files: Boot, rootfs: Rootfs, network: HostNetwork) -> Iterator[Machines]:
    loops_before = loop_devices()
    made = Machines(tmp_path / "data", guest_files, network, rootfs=rootfs)
    made.start()
    try:
        yield made
    finally:
        for state in made.states():
            made.destroy(state.workspace_id)
        network.teardown()
    assert list((tmp_path / "data" / "vms").iterdir()) == []
    assert network.taps() == []
    poll_until(lambda: loop_devices() == loops_before, timeout_s=10)


def spec(workspace_id: str, **changes: Any) -> MachineSpec:
    values: dict[str, Any] = {
        "workspace_id": workspace_id,
        "instance": "inst",
        "image": IMAGE,
        "vcpus": 1,
        "cpu_quota": 0.5,
        "memory_mib": 256,
        "disk_bytes": 256 << 20,
        "env": {"GREETING": "hello"},
    }
    return MachineSpec(**{**values, **changes})


@contextlib.contextmanager
def agent(machines: Machines, workspace_id: str) -> Iterator[AgentChannel]:
    """A new agent in the VM, through vsock's handshake (waiting out the boot); closed after."""
    made: list[AgentChannel] = []

    def connected() -> bool:
        try:
            made.append(AgentChannel(machines.connect(workspace_id, AGENT_PORT), workspace_id))
        except ProviderUnavailable:
            return False
        return True

    poll_until(connected, timeout_s=30)
    try:
        made[0].wait_ready(10)
        yield made[0]
    finally:
        made[0].close()


def sh(channel: AgentChannel, script: str, timeout_s: float = 20) -> ExecResult:
    return calls.run(channel, Command(argv=["sh", "-c", script], timeout_s=timeout_s))


def requests(machines: Machines, workspace_id: str) -> list[dict[str, Any]]:
    log = machines.data_dir / "vms" / workspace_id / "api.sock.requests.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_vm_is_configured_in_firecrackers_order_boots_its_init_and_serves_the_agent(machines: Machines) -> None:
    machines.create(spec("ws_one"))
    calls_made = requests(machines, "ws_one")
    assert [(call["method"], call["path"]) for call in calls_made] == ORDER
    assert [call["status"] for call in calls_made] == [200] + [204] * 7
    assert calls_made[1]["body"] == {"vcpu_count": 1, "mem_size_mib": 256, "smt": False}
    assert calls_made[-1]["body"] == {"action_type": "InstanceStart"}
    record = read_record(machines.data_dir / "vms" / "ws_one" / "machine.json")
    assert record is not None and record.booted and record.tap
    (state,) = machines.states()
    assert (state.workspace_id, state.instance, state.running) == ("ws_one", "inst", True)

    with agent(machines, "ws_one") as channel:
        result = sh(channel, "echo $GREETING; hostname; pwd; cat /proc/1/cmdline | tr '\\0' ' '")
        assert result.stdout.decode().splitlines() == [
            "hello",
            "ws-one",
            "/workspace",
            "/usr/bin/python3 -IS /sbin/workspace-init ",
        ]
        calls.write_file(channel, "/workspace/notes.txt", b"kept on the data drive", 0o640)
        assert calls.read_file(channel, "/workspace/notes.txt") == b"kept on the data drive"


def test_the_disk_limit_is_a_hard_quota_and_the_root_is_writable_on_top_of_it(machines: Machines) -> None:
    machines.create(spec("ws_disk", disk_bytes=64 << 20))
    with agent(machines, "ws_disk") as channel:
        size = sh(channel, "df -k / | tail -1 | awk '{print $2}'")
        assert 40_000 < int(size.stdout) <= 65_536
        full = sh(channel, "dd if=/dev/zero of=/workspace/big bs=1M count=100 2>&1; echo exit=$?")
        assert b"No space left on device" in full.stdout and b"exit=1" in full.stdout
        assert sh(channel, "rm /workspace/big && echo x > /etc/written && cat /etc/written").stdout == b"x\n"


def test_vms_reach_the_host_but_not_each_other(machines: Machines, network: HostNetwork) -> None:
    machines.create(spec("ws_a"))
    machines.create(spec("ws_b"))
    record_a = read_record(machines.data_dir / "vms" / "ws_a" / "machine.json")
    assert record_a is not None
    address_a = network.tap(record_a.index).address
    with socket.create_server((network.gateway, 0)) as server:
        port = server.getsockname()[1]

        def accept_one() -> None:
            connection, _ = server.accept()
            connection.close()

        accepted = threading.Thread(target=accept_one)
        accepted.start()
        with agent(machines, "ws_b") as b:
            reached = sh(b, f"python3 -c 'import socket; socket.create_connection((\"{network.gateway}\", {port}), 5)'")
            assert reached.exit_code == 0, reached.stderr
        accepted.join(10)
    with agent(machines, "ws_a") as a:
        serve = (
            "import socket; s = socket.create_server(('0.0.0.0', 8080)); [s.accept()[0].close() for _ in iter(int, 1)]"
        )
        sh(a, f'setsid python3 -c "{serve}" >/dev/null 2>&1 &')
        poll_until(lambda: _connects(address_a, 8080), timeout_s=10)  # the host reaches A: A listens
    with agent(machines, "ws_b") as b:
        blocked = sh(b, f"python3 -c 'import socket; socket.create_connection((\"{address_a}\", 8080), 2)'")
        assert blocked.exit_code != 0 and b"timed out" in blocked.stderr  # dropped, not refused


def _connects(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), 1).close()
    except OSError:
        return False
    return True


def test_destroy_powers_the_vm_off_with_ctrl_alt_del_and_removes_everything(machines: Machines, tmp_path: Path) -> None:
    machines.create(spec("ws_gone"))
    record = read_record(machines.data_dir / "vms" / "ws_gone" / "machine.json")
    assert record is not None
    kept = tmp_path / "requests.jsonl"  # a second name for the request log: it outlives the VM's directory
    os.link(machines.data_dir / "vms" / "ws_gone" / "api.sock.requests.jsonl", kept)
    machines.destroy("ws_gone")
    last = json.loads(kept.read_text().splitlines()[-1])
    assert (last["path"], last["body"], last["status"]) == ("/actions", {"action_type": "SendCtrlAltDel"}, 204)
    assert process_gone(record.pid, record.pid_start)
    assert not (machines.data_dir / "vms" / "ws_gone").exists()
    assert machines.states() == []
    machines.destroy("ws_gone")  # a missing VM is not an error


def process_gone(pid: int, start: int) -> bool:
    return not process.alive(pid, start)


def test_a_vm_whose_firecracker_process_is_killed_is_reported_down_and_cleaned_up(machines: Machines) -> None:
    machines.create(spec("ws_killed"))
    record = read_record(machines.data_dir / "vms" / "ws_killed" / "machine.json")
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    poll_until(lambda: not machines.states()[0].running, timeout_s=10)
    (state,) = machines.states()
    assert state.detail.startswith("its firecracker process ended")
    machines.destroy("ws_killed")


def test_another_owner_of_the_same_directory_finds_the_running_vms_and_reaches_them(
    machines: Machines, guest_files: Boot, rootfs: Rootfs, network: HostNetwork
) -> None:
    machines.create(spec("ws_kept"))
    with agent(machines, "ws_kept") as channel:
        sh(channel, "echo before > /workspace/mark")
    again = Machines(machines.data_dir, guest_files, network, rootfs=rootfs)  # as after a restart
    again.start()  # keeps the taps of VMs it finds
    assert [(state.workspace_id, state.running) for state in again.states()] == [("ws_kept", True)]
    with agent(again, "ws_kept") as channel:
        assert sh(channel, "cat /workspace/mark").stdout == b"before\n"


def test_a_failed_boot_leaves_nothing_and_says_why(machines: Machines, tmp_path: Path) -> None:
    broken = Machines(machines.data_dir, Boot(firecracker=str(STANDIN), kernel=tmp_path / "no-vmlinux"), None)
    with pytest.raises(ProviderUnavailable, match="boot-source"):
        broken.create(spec("ws_broken"))
    assert not (machines.data_dir / "vms" / "ws_broken").exists()


def test_health_names_each_missing_piece(tmp_path: Path, guest_files: Boot) -> None:
    missing = Machines(tmp_path, Boot(firecracker="/nowhere/firecracker", kernel=tmp_path / "vmlinux"), None)
    problems = missing.probe()
    assert "firecracker binary not found at /nowhere/firecracker" in problems
    assert f"guest kernel not found at {tmp_path / 'vmlinux'} (make firecracker-guest)" in problems
    assert Machines(tmp_path, guest_files, None).probe() == []
    (tmp_path / "data.ext4").write_bytes(b"x")  # what a path out of vms/ would reach
    assert missing.disk_usage(["..", "../..", "ws_none"]) == {} and missing.usage(["../.."]) == {}
    assert (Machines(tmp_path, guest_files, None).version() or "").startswith("Firecracker v")


def test_start_up_reconciliation_destroys_an_orphan_vm_and_fails_a_workspace_whose_vm_died(
    machines: Machines, make_settings: MakeSettings
) -> None:
    settings = make_settings(default_provider="firecracker", health_interval_s=0.5)

    def providers(instance_id: str) -> dict[str, Any]:
        return {"firecracker": FirecrackerProvider(machines, instance_id)}

    first = Runtime(settings, providers=providers).start()
    try:
        with first.client(timeout_s=120) as client:
            kept = client.create().id
            dying = client.create().id
    finally:
        first.stop()  # the VMs keep running
    instance = first.instance_id
    machines.create(spec("ws_orphan", instance=instance))  # ours by its label, unknown to the state log
    record = read_record(machines.data_dir / "vms" / dying / "machine.json")
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)  # its VM dies while no runtime runs
    poll_until(lambda: not process.alive(record.pid, record.pid_start))

    second = Runtime(settings, providers=providers).start()
    try:
        assert {state.workspace_id for state in machines.states()} == {kept, dying}  # the orphan is gone
        with second.client(timeout_s=120) as client:
            assert client.get(kept).state == "ready"
            assert client.exec(kept, ["echo", "adopted"]).stdout == b"adopted\n"
            failed = client.get(dying)
            assert failed.state == "failed" and "firecracker process ended" in (failed.error or "")
            client.destroy(kept)
            client.destroy(dying)
    finally:
        second.stop()
    assert machines.states() == []
