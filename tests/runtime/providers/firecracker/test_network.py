"""The VMs' host network for real: a bridge, isolated taps, iptables beside Docker's, NAT out.

Each "VM" is a process in its own network namespace whose ``eth0`` is wired to its tap by
the stand-in firecracker's network device (``tests.firecracker_standin.net``). Every test
uses its own bridge (``awft<random>``) and subnet (``172.30.<random>.0/24``), never the
default one, and leaves nothing behind: no bridge, tap, iptables rule or namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.errors import CapacityExceeded, ConfigError, ProviderUnavailable
from runtime.providers.firecracker.network import FALLBACK_NAMESERVER, HostNetwork, Tap, guest_nameservers
from tests.firecracker_standin import net
from tests.helpers import poll_until

pytestmark = pytest.mark.docker

PING = r"""
import os, socket, struct, sys, time
target, timeout = sys.argv[1], float(sys.argv[2])
ident = os.getpid() & 0xFFFF
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"agent-workspaces"
packet = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.sendto(packet, (target, 0))
deadline = time.monotonic() + timeout
while (left := deadline - time.monotonic()) > 0:
    sock.settimeout(left)
    try:
        data, (source, _) = sock.recvfrom(2048)
    except socket.timeout:
        break
    start = (data[0] & 15) * 4
    kind, _, _, reply_id, _ = struct.unpack("!BBHHH", data[start : start + 8])
    if source == target and kind == 0 and reply_id == ident:
        sys.exit(0)
sys.exit(1)
"""
"""One ICMP echo (no ``ping`` binary here): exit 0 when ``target`` answers within the timeout."""

PEER_SERVER = r"""
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    connection, (peer, _) = server.accept()
    connection.sendall(peer.encode())
    connection.close()
"""
"""A TCP server that tells each client the address it saw the connection come from."""

PEER_CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as connection:
    print(connection.recv(100).decode())
"""


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)


def link(name: str) -> dict[str, object] | None:
    done = subprocess.run(["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def iptables(*args: str) -> list[str]:
    return run("iptables", "-w", *args).stdout.splitlines()


def leftovers(network: HostNetwork) -> list[str]:
    """What of ``network`` still exists on the host (empty: nothing)."""
    found = [f"link {name}" for name in [network.bridge, *network.taps()] if link(name) is not None]
    found += [f"link {line}" for line in run("ip", "-o", "link", "show").stdout.splitlines() if ": fcg" in line]
    found += [f"chain {network.chain}"] if network.chain in "\n".join(iptables("-S")) else []
    found += [f"rule {line}" for line in iptables("-S") + iptables("-t", "nat", "-S") if network.label in line]
    return found


@pytest.fixture
def network() -> Iterator[HostNetwork]:
    """A host network of the test's own, torn down (and checked gone) whatever happens."""
    made = HostNetwork(bridge=f"awft{secrets.token_hex(2)}", subnet=f"172.30.{secrets.randbelow(256)}.0/24")
    try:
        yield made
    finally:
        made.teardown()
        assert leftovers(made) == []


@dataclass
class Namespaces:
    """Processes each holding a network namespace of its own; all killed at the end."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    closers: list[net.Closer] = field(default_factory=list)

    def new(self) -> int:
        process = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"])
        self.processes.append(process)
        ours = os.readlink("/proc/self/ns/net")
        poll_until(lambda: os.readlink(f"/proc/{process.pid}/ns/net") != ours, timeout_s=10)
        return process.pid

    def vm(self, network: HostNetwork, index: int) -> tuple[int, Tap]:
        """A namespace behind tap ``index``, its ``eth0`` configured as ``guest_init`` would."""
        tap = network.add_tap(index)
        pid = self.new()
        self.closers.append(net.attach(tap.name, pid, tap.mac))
        inside(pid, "ip", "link", "set", "dev", "lo", "up")
        inside(pid, "ip", "addr", "add", f"{tap.address}/{tap.prefix}", "dev", "eth0")
        inside(pid, "ip", "link", "set", "dev", "eth0", "up")
        inside(pid, "ip", "route", "add", "default", "via", tap.gateway)
        return pid, tap

    def close(self) -> None:
        for closer in self.closers:
            closer.close()
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    made = Namespaces()
    try:
        yield made
    finally:
        made.close()


def inside(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return run("nsenter", "-t", str(pid), "-n", "--", *argv)


def ping(pid: int, address: str, timeout_s: float = 1.0) -> bool:
    argv = ["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-c", PING, address, str(timeout_s)]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


def drops(network: HostNetwork) -> int:
    """Packets dropped so far by the chain's VM-to-VM rule (its first)."""
    rows = iptables("-L", network.chain, "-n", "-v", "-x")
    return int(rows[2].split()[0])


# ---------------------------------------------------------------------- the host side


def test_ensure_twice_makes_the_bridge_and_each_rule_once(network: HostNetwork) -> None:
    network.ensure()
    network.ensure()

    bridge = link(network.bridge)
    assert bridge is not None and "UP" in str(bridge["flags"])
    addresses = json.loads(run("ip", "-j", "-4", "addr", "show", "dev", network.bridge).stdout)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addresses] == [(network.gateway, network.prefix)]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    jumps = [line for line in iptables("-S", "FORWARD") if f"-j {network.chain}" in line]
    assert jumps == [f'-A FORWARD -m comment --comment "{network.label}" -j {network.chain}']
    assert iptables("-S", "FORWARD")[1] == jumps[0], "our chain is jumped to before Docker's"
    nat = [line for line in iptables("-t", "nat", "-S", "POSTROUTING") if network.label in line]
    assert nat == [
        f'-A POSTROUTING -s {network.subnet} ! -o {network.bridge} -m comment --comment "{network.label}" -j MASQUERADE'
    ]
    b = network.bridge
    assert iptables("-S", network.chain)[1:] == [
        f"-A {network.chain} -i {b} -o {b} -j DROP",
        f"-A {network.chain} ! -s {network.subnet} -i {b} -j DROP",
        f"-A {network.chain} -i {b} -o docker0 -j DROP",
        f"-A {network.chain} -i {b} -o br-+ -j DROP",
        f"-A {network.chain} -i {b} ! -o {b} -j ACCEPT",
        f"-A {network.chain} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {network.chain} -o {b} -j DROP",
    ]


def test_ensure_puts_back_a_rule_that_was_removed(network: HostNetwork) -> None:
    network.ensure()
    before = iptables("-S", network.chain)
    run("iptables", "-w", "-D", network.chain, "1")
    run("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "1")

    network.ensure()

    assert iptables("-S", network.chain) == before
    assert len([line for line in iptables("-t", "nat", "-S") if network.label in line]) == 1


def test_a_tap_joins_the_bridge_as_an_isolated_port_and_can_be_removed(network: HostNetwork) -> None:
    network.ensure()
    tap = network.add_tap(0)

    third = str(network.subnet.network_address).rsplit(".", 2)[1]
    assert tap == Tap(
        f"{network.bridge}-0", network.gateway[:-1] + "2", network.gateway, 24, f"06:00:ac:1e:{int(third):02x}:02"
    )
    shown = link(tap.name)
    assert shown is not None and shown["master"] == network.bridge
    ports = json.loads(run("bridge", "-j", "-d", "link", "show", "dev", tap.name).stdout)
    assert ports[0]["isolated"] is True
    assert network.add_tap(0) == tap, "adding it again re-uses it"
    assert network.taps() == [tap.name]

    network.remove_tap(tap.name)
    network.remove_tap(tap.name)  # already gone: fine

    assert link(tap.name) is None and network.taps() == []


def test_taps_lists_ours_in_index_order_and_replaces_a_link_of_the_wrong_kind(network: HostNetwork) -> None:
    network.ensure()
    # (no dummy links on this kernel: a veth pair, both ends going when one is deleted)
    run("ip", "link", "add", network.tap_name(7), "type", "veth", "peer", "name", f"awftp{secrets.token_hex(2)}")
    try:
        network.add_tap(12)
        network.add_tap(7)
        network.add_tap(2)

        assert network.taps() == [network.tap_name(2), network.tap_name(7), network.tap_name(12)]
        shown = link(network.tap_name(7))
        assert shown is not None and shown["master"] == network.bridge
        assert shown["linkinfo"]["info_kind"] == "tun"  # type: ignore[index]
        assert shown["linkinfo"]["info_data"]["type"] == "tap"  # type: ignore[index]
    finally:
        subprocess.run(["ip", "link", "del", network.tap_name(7)], capture_output=True, check=False)


def test_a_tap_for_the_jailer_belongs_to_its_uid_and_is_replaced_when_that_changes(network: HostNetwork) -> None:
    network.ensure()
    network.add_tap(0, owner=4321)
    shown = link(network.tap_name(0))
    assert shown is not None and shown["linkinfo"]["info_data"]["user"] == 4321  # type: ignore[index]
    network.add_tap(0, owner=4321)
    again = link(network.tap_name(0))
    assert again is not None and again["ifindex"] == shown["ifindex"], "the same owner's tap is re-used"

    network.add_tap(0)

    shown = link(network.tap_name(0))
    assert shown is not None and "user" not in shown["linkinfo"]["info_data"]  # type: ignore[operator,index]
    assert shown["master"] == network.bridge


def test_ensure_refuses_a_subnet_in_use_and_a_name_taken_by_another_link(network: HostNetwork) -> None:
    docker0 = HostNetwork(bridge=network.bridge, subnet="172.17.3.0/24")  # inside docker0's 172.17.0.0/16
    with pytest.raises(ProviderUnavailable, match=r"overlaps 172\.17\.0\.0/16 on docker0"):
        docker0.ensure()
    run("ip", "link", "add", network.bridge, "type", "veth", "peer", "name", f"awftp{secrets.token_hex(2)}")
    try:
        with pytest.raises(ProviderUnavailable, match="is not a bridge"):
            network.ensure()
    finally:
        run("ip", "link", "del", network.bridge)


def test_only_our_taps_can_be_removed_and_the_subnet_bounds_the_indexes(network: HostNetwork) -> None:
    with pytest.raises(ConfigError):
        network.remove_tap("eth0")
    with pytest.raises(CapacityExceeded):
        network.tap(253)
    assert network.tap(252).address.endswith(".254")
    with pytest.raises(ConfigError):
        HostNetwork(bridge="a-name-far-too-long")


def test_the_host_can_run_the_network_here() -> None:
    assert HostNetwork().probe() == ""


def test_teardown_removes_the_bridge_taps_and_every_rule(network: HostNetwork) -> None:
    network.ensure()
    network.add_tap(0)
    network.add_tap(1)
    assert leftovers(network) != []

    network.teardown()
    network.teardown()  # nothing left: fine

    assert leftovers(network) == []


# ---------------------------------------------------------------------- VMs behind taps


def test_vms_reach_the_gateway_but_never_each_other(network: HostNetwork, namespaces: Namespaces) -> None:
    network.ensure()
    first, _ = namespaces.vm(network, 0)
    second, second_tap = namespaces.vm(network, 1)
    poll_until(lambda: ping(first, network.gateway), timeout_s=20)
    poll_until(lambda: ping(second, network.gateway), timeout_s=20)

    assert not ping(first, second_tap.address, timeout_s=2)  # on-link: isolated ports drop it

    inside(first, "ip", "route", "add", f"{second_tap.address}/32", "via", network.gateway)
    dropped = drops(network)
    assert not ping(first, second_tap.address, timeout_s=2)  # routed through the gateway
    assert drops(network) > dropped, "the FORWARD rule, not chance, stopped it"

    inside(first, "ip", "route", "del", f"{second_tap.address}/32")
    # Each layer alone is enough. Isolated ports, with the FORWARD rules bypassed
    # (Docker's br_netfilter also sends bridged frames through FORWARD):
    run("iptables", "-w", "-I", network.chain, "1", "-i", network.bridge, "-o", network.bridge, "-j", "ACCEPT")
    assert not ping(first, second_tap.address, timeout_s=2)
    # The control: with neither layer the two can talk, so the failures above mean something.
    run("bridge", "link", "set", "dev", second_tap.name, "isolated", "off")
    poll_until(lambda: ping(first, second_tap.address), timeout_s=20)
    # The FORWARD rules alone (ensure rebuilds the chain it no longer recognises):
    network.ensure()
    assert not ping(first, second_tap.address, timeout_s=2)
    # Adding the tap again (re-used, its VM running) isolates it again.
    network.add_tap(1)
    assert json.loads(run("bridge", "-j", "-d", "link", "show", "dev", second_tap.name).stdout)[0]["isolated"]
    assert ping(second, network.gateway)


def test_outbound_traffic_leaves_masqueraded_as_the_host(network: HostNetwork, namespaces: Namespaces) -> None:
    network.ensure()
    vm, tap = namespaces.vm(network, 0)
    # "Outside": a namespace behind a veth with a subnet of its own, and no route back to the VMs.
    outside = namespaces.new()
    veth, subnet = f"awfto{secrets.token_hex(2)}", f"198.18.{secrets.randbelow(256)}"
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(outside))
    run("ip", "addr", "add", f"{subnet}.1/30", "dev", veth)
    run("ip", "link", "set", "dev", veth, "up")
    inside(outside, "ip", "addr", "add", f"{subnet}.2/30", "dev", "eth0")
    inside(outside, "ip", "link", "set", "dev", "eth0", "up")
    server = subprocess.Popen(
        ["nsenter", "-t", str(outside), "-n", "--", sys.executable, "-c", PEER_SERVER, f"{subnet}.2", "8080"]
    )
    try:
        seen: list[str] = []

        def connect() -> bool:
            argv = ["nsenter", "-t", str(vm), "-n", "--", sys.executable, "-c", PEER_CLIENT, f"{subnet}.2", "8080"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            seen.append(done.stdout.strip())
            return done.returncode == 0

        poll_until(connect, timeout_s=20)

        assert seen[-1] == f"{subnet}.1", f"the server saw {seen[-1]}, not the host (VM {tap.address})"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()


def test_the_pumps_end_quietly_when_the_guest_namespace_dies(network: HostNetwork, namespaces: Namespaces) -> None:
    network.ensure()
    tap = network.add_tap(0)
    pid = namespaces.new()
    closer = net.attach(tap.name, pid, tap.mac)
    assert closer.running
    assert "eth0" in inside(pid, "ip", "link", "show", "dev", "eth0").stdout
    assert tap.mac in inside(pid, "ip", "link", "show", "dev", "eth0").stdout

    namespaces.processes[-1].kill()
    namespaces.processes[-1].wait()

    poll_until(lambda: not closer.running, timeout_s=10)
    closer.close()
    closer.close()
    shown = link(tap.name)
    assert shown is not None and "NO-CARRIER" in str(shown["flags"]), "nothing holds the tap any more"


def test_closing_the_pumps_removes_the_guest_eth0(network: HostNetwork, namespaces: Namespaces) -> None:
    network.ensure()
    tap = network.add_tap(0)
    pid = namespaces.new()

    with net.attach(tap.name, pid, tap.mac):
        assert inside(pid, "ip", "-o", "link", "show").stdout.count("eth0") == 1

    assert "eth0" not in inside(pid, "ip", "-o", "link", "show").stdout


# ---------------------------------------------------------------------- the guest's resolvers


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_guests_get_the_hosts_reachable_ipv4_resolvers(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "resolv.conf",
        "# comment\nsearch example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fd00::1\n"
        "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver 10.0.0.5\n",
    )

    assert guest_nameservers((conf,)) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_a_loopback_stub_resolver_sends_guests_to_systemd_resolveds_upstreams(tmp_path: Path) -> None:
    stub = write(tmp_path / "resolv.conf", "nameserver 127.0.0.53\noptions edns0\n")
    upstream = write(tmp_path / "upstream.conf", "nameserver 192.0.2.53\n")

    assert guest_nameservers((stub, upstream)) == ["192.0.2.53"]
    assert guest_nameservers((stub, tmp_path / "missing")) == [FALLBACK_NAMESERVER]


def test_resolvers_default_to_the_hosts_files() -> None:
    servers = HostNetwork().nameservers()
    assert servers and all(not server.startswith("127.") for server in servers)
