"""The VMs' side of the host network: one bridge, a tap per VM as an isolated port, NAT out.

Docker workspaces join a network with ``enable_icc=false``; microVMs get the same promise,
kept at two layers. Layer 2: every tap is an *isolated* bridge port, whose frames the
bridge forwards only to non-isolated ports - the bridge itself, the gateway - so no frame,
not even an ARP broadcast, reaches another VM. Layer 3: what enters from the bridge and
leaves through it again (a VM routing to another through the gateway; with Docker's
``br_netfilter``, bridged frames too) is dropped in ``FORWARD``.

Outbound traffic is routed (``net.ipv4.ip_forward=1``) and masqueraded as it leaves through
any other interface. Docker sets ``FORWARD``'s policy to ``DROP`` and owns its chains, so our
filter rules live in a chain of our own, ``AGENT-WORKSPACES-<bridge>``, jumped to from the
top of ``FORWARD``: it accepts what leaves the bridge (but not into Docker's networks) and
the replies, drops anything else bound for it, and returns the rest to Docker's chains. The
jump and the ``MASQUERADE`` rule carry the comment ``agent-workspaces:<bridge>``. Debian's
``iptables`` is the nf_tables variant, the one Docker calls (``iptables`` on ``PATH``).

The guest network is IPv4 only: the bridge holds the gateway (the subnet's first address),
VM ``index`` gets the subnet's address ``index + 2`` and the MAC ``06:00:`` + its four
address bytes (locally administered: never a vendor's). Taps are named ``<bridge>-<index>``.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import CapacityExceeded, ConfigError, ProviderUnavailable

__all__ = ["DEFAULT_BRIDGE", "DEFAULT_SUBNET", "FALLBACK_NAMESERVER", "HostNetwork", "Tap", "guest_nameservers"]

DEFAULT_BRIDGE = "awfc0"
DEFAULT_SUBNET = "172.29.0.0/16"
FALLBACK_NAMESERVER = "1.1.1.1"
"""The guest's resolver when the host names none a VM can reach."""
RESOLV_CONFS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))
"""Where the host's resolvers are read, in order; the second is systemd-resolved's upstream list."""

_IFNAMSIZ = 15  # interface names, without the NUL
_CHAIN_MAX = 28  # iptables chain names
_BRIDGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _mac(address: ipaddress.IPv4Address) -> str:
    return "06:00:" + ":".join(f"{byte:02x}" for byte in address.packed)


@dataclass(frozen=True)
class Tap:
    """One VM's tap and the guest's side of it.

    Attributes:
        name: The tap's interface name on the host (what ``PUT /network-interfaces`` names).
        address: The guest's IPv4 address.
        gateway: The guest's default gateway (the bridge's address).
        prefix: The subnet's prefix length.
        mac: The guest's MAC (``guest_mac``).
    """

    name: str
    address: str
    gateway: str
    prefix: int
    mac: str


class HostNetwork:
    """The bridge, its taps and the iptables rules of the VMs on this host; thread-safe. Needs root.

    Args:
        bridge: The bridge's name; taps are ``<bridge>-<index>``, the chain ``AGENT-WORKSPACES-<bridge>``.
        subnet: The VMs' IPv4 subnet; the gateway is its first address.
        iptables: The ``iptables`` binary (the variant Docker uses).
        timeout_s: How long one ``ip``/``bridge``/``iptables`` command may take.

    Raises:
        ConfigError: The bridge name or the subnet cannot work (too long, not IPv4, too small).
    """

    def __init__(
        self,
        bridge: str = DEFAULT_BRIDGE,
        subnet: str = DEFAULT_SUBNET,
        *,
        iptables: str = "iptables",
        timeout_s: float = 10.0,
    ) -> None:
        try:
            network = ipaddress.ip_network(subnet)
        except ValueError as exc:
            raise ConfigError(f"firecracker subnet {subnet!r} is not a network: {exc}") from None
        if not isinstance(network, ipaddress.IPv4Network) or network.num_addresses < 4:
            raise ConfigError(f"firecracker subnet {subnet!r}: an IPv4 network of at least 4 addresses is needed")
        self.bridge = bridge
        self.subnet = network
        self.prefix = network.prefixlen
        self.gateway = str(network.network_address + 1)
        self.capacity = network.num_addresses - 3
        """How many VMs fit: every address but the network's, the gateway's and the broadcast."""
        self.chain = f"AGENT-WORKSPACES-{bridge}"
        self.label = f"agent-workspaces:{bridge}"
        longest_tap = len(self.tap_name(self.capacity - 1))
        if not _BRIDGE_NAME.match(bridge) or longest_tap > _IFNAMSIZ or len(self.chain) > _CHAIN_MAX:
            raise ConfigError(
                f"firecracker bridge name {bridge!r}: letters, digits and _, short enough for "
                f"'{bridge}-{self.capacity - 1}' to fit in {_IFNAMSIZ} characters"
            )
        self._iptables = iptables
        self._timeout_s = timeout_s
        self._taps = re.compile(rf"^{re.escape(bridge)}-(0|[1-9][0-9]*)$")
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ health

    def probe(self) -> str:
        """Why VMs cannot have a network here, in one line ("" when they can)."""
        if os.geteuid() != 0:
            return "not root: the VMs' bridge, taps and iptables rules need root"
        if not os.path.exists("/dev/net/tun"):
            return "/dev/net/tun is missing: this kernel has no TUN/TAP support (modprobe tun)"
        for tool, package in (("ip", "iproute2"), ("bridge", "iproute2"), (self._iptables, "iptables")):
            if shutil.which(tool) is None:
                return f"`{tool}` not found: install {package}"
        try:
            self._run([self._iptables, "-w", "-S", "FORWARD"])
        except ProviderUnavailable as exc:
            return exc.message
        return ""

    # ------------------------------------------------------------------ the host side

    def ensure(self) -> None:
        """Make the bridge, forwarding and the rules exist as described; harmless to repeat.

        Raises:
            ProviderUnavailable: A command failed (its argv and stderr are in the message), the
                bridge's name is taken by another kind of interface, or the subnet is in use.
        """
        with self._lock:
            link = self._link(self.bridge)
            if link is None:
                self._check_subnet_free()
                self._run(["ip", "link", "add", "name", self.bridge, "type", "bridge"])
                link = self._link(self.bridge)
            if link is None or _kind(link) != "bridge":
                raise ProviderUnavailable(f"{self.bridge} exists and is not a bridge: choose another bridge name")
            # A bridge without a set address takes its smallest port's, which changes as
            # VMs come and go and would leave stale gateway entries in the guests' ARP caches.
            self._run(["ip", "link", "set", "dev", self.bridge, "address", _mac(self.subnet.network_address + 1)])
            self._run(["ip", "addr", "replace", f"{self.gateway}/{self.prefix}", "dev", self.bridge])
            self._run(["ip", "link", "set", "dev", self.bridge, "up"])
            self._enable_forwarding()
            self._ensure_chain()
            self._ensure_labelled("filter", "FORWARD", ["-j", self.chain])
            masquerade = ["-s", str(self.subnet), "!", "-o", self.bridge, "-j", "MASQUERADE"]
            self._ensure_labelled("nat", "POSTROUTING", masquerade)

    def teardown(self) -> None:
        """Remove our taps, the bridge and every rule ``ensure`` made; what is missing is fine.

        ``net.ipv4.ip_forward`` stays on: Docker needs it too.
        """
        with self._lock:
            for name in self.taps():
                self.remove_tap(name)
            link = self._link(self.bridge)
            if link is not None and _kind(link) == "bridge":
                self._run(["ip", "link", "del", "dev", self.bridge])
            self._delete_labelled("filter", "FORWARD")
            if self._iptables_ok(["-S", self.chain]):
                self._run([self._iptables, "-w", "-F", self.chain])
                self._run([self._iptables, "-w", "-X", self.chain])
            self._delete_labelled("nat", "POSTROUTING")

    # ------------------------------------------------------------------ taps

    def tap_name(self, index: int) -> str:
        """The name of VM ``index``'s tap."""
        return f"{self.bridge}-{index}"

    def tap(self, index: int) -> Tap:
        """VM ``index``'s tap and guest addressing (nothing is made).

        Raises:
            CapacityExceeded: The subnet has no address for ``index``.
        """
        if not 0 <= index < self.capacity:
            raise CapacityExceeded(f"the VM subnet {self.subnet} has room for {self.capacity} VMs (index {index})")
        address = self.subnet.network_address + 2 + index
        return Tap(self.tap_name(index), str(address), self.gateway, self.prefix, _mac(address))

    def add_tap(self, index: int, *, owner: int | None = None) -> Tap:
        """Make VM ``index``'s tap: on the bridge, isolated, up. A tap of that name is re-used.

        Args:
            index: The VM's slot (0 and up).
            owner: The uid allowed to open the tap (the jailer's); ``None``: root only.

        Raises:
            CapacityExceeded: The subnet has no address for ``index``.
            ProviderUnavailable: A command failed.
        """
        tap = self.tap(index)
        with self._lock:
            link = self._link(tap.name)
            if link is not None and not self._is_our_tap(link, owner):
                self._run(["ip", "link", "del", "dev", tap.name])  # same name, wrong kind or owner
                link = None
            if link is None:
                owned = [] if owner is None else ["user", str(owner)]
                self._run(["ip", "tuntap", "add", "dev", tap.name, "mode", "tap", *owned])
            # Isolated before up: the port never forwards to another VM, even for an instant.
            self._run(["ip", "link", "set", "dev", tap.name, "master", self.bridge])
            self._run(["bridge", "link", "set", "dev", tap.name, "isolated", "on"])
            self._run(["ip", "link", "set", "dev", tap.name, "up"])
        return tap

    def remove_tap(self, name: str) -> None:
        """Delete tap ``name``; a missing one is fine.

        Raises:
            ConfigError: ``name`` is not one of our taps' names (never delete someone else's link).
            ProviderUnavailable: ``ip`` failed.
        """
        if not self._taps.match(name):
            raise ConfigError(f"{name!r} is not a tap of bridge {self.bridge}")
        with self._lock:
            if self._link(name) is not None:
                self._run(["ip", "link", "del", "dev", name])

    def taps(self) -> list[str]:
        """Our taps that exist on this host (attached to the bridge or not), by index: orphans included."""
        links = json.loads(self._run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")
        found = [
            (int(match.group(1)), link["ifname"])
            for link in links
            if (match := self._taps.match(link.get("ifname", ""))) and _kind(link) == "tun"
        ]
        return [name for _, name in sorted(found)]

    def nameservers(self) -> list[str]:
        """The resolvers a guest should use (see ``guest_nameservers``)."""
        return guest_nameservers()

    # ------------------------------------------------------------------ internals

    def _run(self, argv: list[str], *, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self._timeout_s, check=False)
        except FileNotFoundError:
            raise ProviderUnavailable(f"`{argv[0]}` not found (needed for the VMs' network)") from None
        except subprocess.TimeoutExpired:
            raise ProviderUnavailable(f"`{shlex.join(argv)}` did not finish within {self._timeout_s:g} s") from None
        except OSError as exc:
            raise ProviderUnavailable(f"`{shlex.join(argv)}` could not run: {exc}") from None
        if done.returncode != 0 and not quiet:
            detail = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
            raise ProviderUnavailable(f"`{shlex.join(argv)}` failed: {detail}")
        return done

    def _iptables_ok(self, args: list[str], table: str = "filter") -> bool:
        return self._run([self._iptables, "-w", "-t", table, *args], quiet=True).returncode == 0

    def _link(self, name: str) -> dict[str, Any] | None:
        done = self._run(["ip", "-j", "-d", "link", "show", "dev", name], quiet=True)
        if done.returncode != 0:
            if "does not exist" in done.stderr:
                return None
            raise ProviderUnavailable(f"`ip link show dev {name}` failed: {done.stderr.strip()}")
        links: list[dict[str, Any]] = json.loads(done.stdout or "[]")
        return links[0] if links else None

    @staticmethod
    def _is_our_tap(link: dict[str, Any], owner: int | None) -> bool:
        info = link.get("linkinfo", {}).get("info_data", {})
        if _kind(link) != "tun" or info.get("type") != "tap":
            return False
        if owner is None:
            return "user" not in info
        # ``ip`` shows the owner's name, or its uid if it has none
        return str(info.get("user")) in {str(owner)} | {user.pw_name for user in pwd.getpwall() if user.pw_uid == owner}

    def _check_subnet_free(self) -> None:
        routes = json.loads(self._run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
        for route in routes:
            dst = route.get("dst", "default")
            if dst == "default" or route.get("dev") == self.bridge:
                continue
            try:
                taken = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            except ValueError:
                continue
            if isinstance(taken, ipaddress.IPv4Network) and taken.overlaps(self.subnet):
                raise ProviderUnavailable(
                    f"the VM subnet {self.subnet} overlaps {taken} on {route.get('dev', '?')}: choose another subnet"
                )

    def _enable_forwarding(self) -> None:
        knob = Path("/proc/sys/net/ipv4/ip_forward")
        try:
            if knob.read_text().strip() != "1":
                knob.write_text("1\n")
        except OSError as exc:
            raise ProviderUnavailable(f"cannot set net.ipv4.ip_forward=1: {exc}") from None

    def _chain_rules(self) -> list[list[str]]:
        bridge, subnet = self.bridge, str(self.subnet)
        return [
            ["-i", bridge, "-o", bridge, "-j", "DROP"],  # VM to VM through the gateway
            ["-i", bridge, "!", "-s", subnet, "-j", "DROP"],  # a spoofed source would leave un-NATed
            ["-i", bridge, "-o", "docker0", "-j", "DROP"],  # Docker's networks: containers, gvisor workspaces
            ["-i", bridge, "-o", "br-+", "-j", "DROP"],
            ["-i", bridge, "!", "-o", bridge, "-j", "ACCEPT"],
            ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ["-o", bridge, "-j", "DROP"],  # nothing else may open a connection to a VM
        ]

    def _ensure_chain(self) -> None:
        rules = self._chain_rules()
        if not self._iptables_ok(["-S", self.chain]):
            self._run([self._iptables, "-w", "-N", self.chain])
        listed = self._run([self._iptables, "-w", "-S", self.chain]).stdout.splitlines()
        present = [line for line in listed if line.startswith("-A ")]
        if len(present) == len(rules) and all(self._iptables_ok(["-C", self.chain, *rule]) for rule in rules):
            return
        # Rebuilt only when it differs (first run, or an older rule set): no window otherwise.
        self._run([self._iptables, "-w", "-F", self.chain])
        for rule in rules:
            self._run([self._iptables, "-w", "-A", self.chain, *rule])

    def _labelled(self, table: str, chain: str) -> list[list[str]]:
        """The rules of ``chain`` carrying our comment, as ``-A`` argument lists."""
        listed = self._run([self._iptables, "-w", "-t", table, "-S", chain]).stdout.splitlines()
        rules = []
        for line in listed:
            words = shlex.split(line)
            if any(word == "--comment" and after == self.label for word, after in itertools.pairwise(words)):
                rules.append(words)
        return rules

    def _ensure_labelled(self, table: str, chain: str, rule: list[str]) -> None:
        """Exactly one ``rule`` (with our comment) at the top of ``chain``."""
        full = ["-m", "comment", "--comment", self.label, *rule]
        labelled = self._labelled(table, chain)
        if len(labelled) == 1 and self._iptables_ok(["-C", chain, *full], table):
            return
        self._delete_labelled(table, chain)
        # At the top: before Docker's rules, which end in FORWARD's DROP policy for us.
        self._run([self._iptables, "-w", "-t", table, "-I", chain, "1", *full])

    def _delete_labelled(self, table: str, chain: str) -> None:
        for words in self._labelled(table, chain):
            self._run([self._iptables, "-w", "-t", table, "-D", *words[1:]])


def _kind(link: dict[str, Any]) -> str:
    return str(link.get("linkinfo", {}).get("info_kind", ""))


def guest_nameservers(paths: tuple[Path, ...] = RESOLV_CONFS) -> list[str]:
    """The IPv4 resolvers a guest can reach: the first of ``paths`` that names some wins.

    A VM cannot reach the host's loopback resolvers (systemd-resolved's 127.0.0.53, a local
    dnsmasq), so those are skipped - and with them a file naming nothing else, which is why
    systemd-resolved's list of upstream servers is read next. IPv6 resolvers are skipped
    too: the guest network is IPv4 only. With nothing left the guest gets ``1.1.1.1``.
    At most three, as resolv.conf allows.
    """
    for path in paths:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        found: list[str] = []
        for line in lines:
            words = line.split()
            if len(words) < 2 or words[0] != "nameserver":
                continue
            try:
                address = ipaddress.ip_address(words[1])
            except ValueError:
                continue
            usable = isinstance(address, ipaddress.IPv4Address) and not (address.is_loopback or address.is_unspecified)
            if usable and str(address) not in found:
                found.append(str(address))
        if found:
            return found[:3]
    return [FALLBACK_NAMESERVER]
