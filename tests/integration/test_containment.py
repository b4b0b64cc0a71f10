"""Containment, proved from inside a workspace, under runsc and under runc.

Each test is one guarantee (docs/limits.md, "Containment"). Proved elsewhere, not repeated here:

- workspaces cannot reach each other (ICC off): ``test_isolation.py``,
  ``test_workspaces_cannot_reach_each_other`` and the network option checks beside it;
- memory, pids and CPU limits hold: ``test_limits.py`` (memory bomb, fork bomb, CPU
  quota, under both runtimes); the tmpfs of a read-only root is bounded below;
- a disk filler is measured and alerted: ``test_limits.py``,
  ``test_disk_use_is_measured_and_over_budget_raises_an_alert``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from runtime.app import Runtime
from runtime.errors import Conflict
from runtime.providers.docker import MANAGED_NETWORK
from runtime.providers.docker.hardening import CAPABILITIES, WRITABLE_PATHS
from runtime.wire import Client
from tests.conftest import MakeDockerRuntime
from tests.helpers import poll_until
from tests.integration.test_isolation import gateway
from tests.serving import free_port

pytestmark = pytest.mark.docker

CAPABILITY_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7,
                   "NET_BIND_SERVICE": 10}  # fmt: skip
"""Linux's numbers of the capabilities a workspace keeps (linux/capability.h)."""
DOCKER_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/usr/sbin/docker-init"}
"""What Docker itself mounts into every container: its name files and the init (tini)."""
PSEUDO_FILESYSTEMS = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}
PROBE = """
import json, socket, sys
reached = {}
for target in json.loads(sys.argv[1]):
    try:
        socket.create_connection(tuple(target), timeout=2).close()
        reached[f"{target[0]}:{target[1]}"] = True
    except OSError:
        reached[f"{target[0]}:{target[1]}"] = False
print(json.dumps(reached))
"""
AGENT_PID = """
import os
def agent():
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\\0")
        except OSError:
            continue
        if b"aw-agent" in argv and int(entry) != os.getpid():
            return int(entry)
    raise SystemExit("no agent")
"""
GARBAGE = {
    "lengths beyond any frame": "b'\\xff' * 8",
    "text": "b'hello from the workspace\\n' * 3",
    "a frame with a forged header": "b'\\x00\\x00\\x00\\x0d\\x00\\x00\\x00\\x00' + b'{\"ack\": [1]}'",
}


@pytest.fixture(params=["runsc", "runc"])
def runtime(request: pytest.FixtureRequest, make_docker_runtime: MakeDockerRuntime) -> Runtime:
    """A runtime whose workspaces have a read-only root, with its metrics and HTTP ports on loopback."""
    return make_docker_runtime(
        runtimes=(request.param,),
        read_only_root=True,
        metrics_addr=f"127.0.0.1:{free_port()}",
        http_addr=f"127.0.0.1:{free_port()}",
    )


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    with runtime.client(timeout_s=120) as c:
        yield c


@pytest.fixture
def workspace(client: Client) -> Iterator[str]:
    record = client.create()
    yield record.id
    client.destroy(record.id)


def sh(client: Client, workspace_id: str, command: str) -> tuple[int, str]:
    result = client.exec(workspace_id, command, timeout_s=60)
    return result.exit_code, (result.stdout + result.stderr).decode()


def reachable(client: Client, workspace_id: str, targets: list[tuple[str, int]]) -> dict[str, bool]:
    """Which of ``targets`` a workspace can open a TCP connection to."""
    result = client.exec(workspace_id, ["python3", "-c", PROBE, json.dumps(targets)], timeout_s=120)
    assert result.exit_code == 0, result.stderr
    found: dict[str, bool] = json.loads(result.stdout)
    return found


# ---------------------------------------------------------------------- mounts


def test_nothing_of_the_host_is_mounted_but_the_workspace_volume(
    client: Client, workspace: str, docker_client: Any
) -> None:
    code, _ = sh(client, workspace, "test -e /var/run/docker.sock || test -e /run/docker.sock")
    assert code == 1, "a Docker socket is visible in the workspace"
    mounts = docker_client.api.inspect_container(f"aw-{workspace}")["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", f"aw-{workspace}", "/workspace")]
    code, mountinfo = sh(client, workspace, "cat /proc/self/mountinfo")
    assert code == 0
    points: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields, _, after = line.partition(" - ")
        points[fields.split()[4]] = after.split()[0]
    pseudo = {point for point in points if re.match(r"^/(proc|dev|sys)(/|$)", point)}
    assert {points[point] for point in pseudo} <= PSEUDO_FILESYSTEMS, points
    assert set(points) - pseudo == {"/", "/workspace", *DOCKER_FILES, *WRITABLE_PATHS}
    assert {points[path] for path in WRITABLE_PATHS} == {"tmpfs"}


# ---------------------------------------------------------------------- privileges


def test_root_has_only_the_documented_capabilities_and_gains_none_by_execve(client: Client, workspace: str) -> None:
    code, status = sh(client, workspace, "cat /proc/self/status")
    assert code == 0
    caps = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M))
    expected = sum(1 << CAPABILITY_BITS[name] for name in CAPABILITIES)
    assert {name: int(caps[name], 16) for name in ("CapPrm", "CapEff", "CapBnd")} == dict.fromkeys(
        ("CapPrm", "CapEff", "CapBnd"), expected
    )
    assert int(caps["CapInh"], 16) == 0 and int(caps.get("CapAmb", "0"), 16) == 0
    if "NoNewPrivs:" in status:  # gVisor's status file has no such line: prctl asks it below
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    nnp = "import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))"  # PR_GET_NO_NEW_PRIVS
    assert client.exec(workspace, ["python3", "-c", nnp]).stdout == b"1\n"
    # A set-user-id-root program, run by another user, runs as that user.
    code, mode = sh(
        client,
        workspace,
        "cp /usr/bin/python3 /workspace/suid && chmod 4755 /workspace/suid && stat -c %a /workspace/suid",
    )
    assert (code, mode) == (0, "4755\n")
    as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups /workspace/suid -c 'import os; print(os.geteuid())'"
    assert sh(client, workspace, as_nobody) == (0, "65534\n")
    # A dropped capability (NET_RAW) is refused.
    raw = "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"
    refused = client.exec(workspace, ["python3", "-c", raw])
    assert refused.exit_code == 1 and b"PermissionError" in refused.stderr


def test_root_can_still_do_what_the_kept_capabilities_are_for(client: Client, workspace: str) -> None:
    owned = "echo mine > /workspace/owned && chown 65534:65534 /workspace/owned && stat -c %u:%g /workspace/owned"
    assert sh(client, workspace, owned) == (0, "65534:65534\n")  # CHOWN
    assert sh(client, workspace, "chmod 000 /workspace/owned && cat /workspace/owned") == (0, "mine\n")  # DAC_OVERRIDE
    other_user = (
        "setpriv --reuid=65534 --regid=65534 --clear-groups sleep 300 & "
        'until [ "$(stat -c %u /proc/$!)" = 65534 ]; do :; done; kill $!; wait $!; echo $?'
    )
    assert client.exec(workspace, other_user).stdout == b"143\n"  # KILL: another user's process, by SIGTERM
    bind = "import socket; socket.create_server(('0.0.0.0', 80)); print('port 80')"
    assert client.exec(workspace, ["python3", "-c", bind]).stdout == b"port 80\n"  # NET_BIND_SERVICE


# ---------------------------------------------------------------------- filesystem


def test_the_image_is_read_only_and_the_workspace_and_scratch_paths_are_writable(
    client: Client, workspace: str
) -> None:
    code, out = sh(client, workspace, "touch /usr/x")
    assert code != 0 and "Read-only file system" in out
    for path in ["/workspace", *WRITABLE_PATHS]:
        assert sh(client, workspace, f"echo ok > {path}/probe && cat {path}/probe") == (0, "ok\n"), path
    # Programs run from the scratch paths (build tools and test runners do), set-user-id bits do not count there.
    assert sh(client, workspace, "printf '#!/bin/sh\\necho ran' > /tmp/t && chmod +x /tmp/t && /tmp/t") == (0, "ran\n")
    assert sh(client, workspace, "git config --global user.name agent && git config --global user.name") == (
        0,
        "agent\n",
    )


def test_a_scratch_path_filler_stops_at_its_size_and_the_workspace_lives_on(client: Client) -> None:
    record = client.create(memory="256M")
    try:
        code, out = sh(client, record.id, "head -c 200000000 /dev/zero > /tmp/fill")
        assert code != 0 and "No space left on device" in out
        size = int(client.exec(record.id, "du -b /tmp/fill | cut -f1").stdout)
        assert size <= int(WRITABLE_PATHS["/tmp"][0] * (256 << 20))
        assert sh(client, record.id, "rm /tmp/fill && echo alive") == (0, "alive\n")
    finally:
        client.destroy(record.id)


def test_without_a_read_only_root_the_image_can_be_changed(make_docker_runtime: MakeDockerRuntime) -> None:
    runtime = make_docker_runtime(runtimes=("runc",), read_only_root=False)
    with runtime.client(timeout_s=120) as client:
        record = client.create()
        try:
            assert sh(client, record.id, "touch /usr/x && echo changed") == (0, "changed\n")
        finally:
            client.destroy(record.id)


# ---------------------------------------------------------------------- network


def test_the_control_plane_and_host_loopback_services_are_unreachable_but_the_gateway_is_by_design(
    client: Client, runtime: Runtime, workspace: str, docker_client: Any
) -> None:
    bridge = gateway(docker_client, MANAGED_NETWORK)
    host_loopback = socket.create_server(("127.0.0.1", 0))  # some other service of the host, on loopback
    on_gateway = socket.create_server((bridge, 0))  # a host service bound to the bridge gateway only
    try:
        ports = {
            "requests": int(runtime.endpoint.rsplit(":", 1)[1]),
            "events": int(runtime.events_endpoint.rsplit(":", 1)[1]),
            "metrics": int(runtime.metrics_address.rsplit(":", 1)[1]),
            "http": int(runtime.http_address.rsplit(":", 1)[1]),
            "host loopback": host_loopback.getsockname()[1],
        }
        for port in ports.values():  # each is up, seen from the host
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        host_addresses = {
            address.address
            for addresses in psutil.net_if_addrs().values()
            for address in addresses
            if address.family == socket.AF_INET
        }
        targets = [(host, port) for port in ports.values() for host in sorted(host_addresses | {bridge})]
        # The workspace's own loopback is its own: a server there is reachable (the probe works).
        client.exec(workspace, "nohup python3 -m http.server --bind 127.0.0.1 8000 >/dev/null 2>&1 &")
        poll_until(lambda: reachable(client, workspace, [("127.0.0.1", 8000)])["127.0.0.1:8000"], timeout_s=30)
        gateway_port = on_gateway.getsockname()[1]
        reached = reachable(client, workspace, [*targets, (bridge, gateway_port)])
        assert reached.pop(f"{bridge}:{gateway_port}"), "a host service bound to the bridge gateway is reachable"
        assert not any(reached.values()), {target for target, yes in reached.items() if yes}
    finally:
        host_loopback.close()
        on_gateway.close()


# ---------------------------------------------------------------------- the agent's channel


def wait_for_the_agent(client: Client, workspace_id: str) -> None:
    poll_until(lambda: client.exec(workspace_id, "true").via == "agent", timeout_s=60)


def the_rest_is_untouched(client: Client, victim: str, bystander: str, caplog: pytest.LogCaptureFixture) -> None:
    assert client.ping()["version"]
    assert client.exec(bystander, ["echo", "fine"]).stdout == b"fine\n"
    assert client.exec(victim, ["echo", "again"]).stdout == b"again\n"  # by docker exec while the agent restarts
    wait_for_the_agent(client, victim)
    assert client.get(victim).state == "ready"
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert not tracebacks, [record.getMessage() for record in tracebacks]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_written_to_the_agents_stdout_ends_only_that_channel(
    garbage: str, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    victim, bystander = client.create().id, client.create().id
    try:
        wait_for_the_agent(client, victim)
        wait_for_the_agent(client, bystander)
        writer = AGENT_PID + f"\nwith open(f'/proc/{{agent()}}/fd/1', 'wb') as out:\n    out.write({garbage})\n"
        with pytest.raises(Conflict, match="the workspace's agent stopped while the command ran"):
            client.exec(victim, ["python3", "-c", writer], timeout_s=20)
        assert any("sent garbage" in record.getMessage() for record in caplog.records)
        the_rest_is_untouched(client, victim, bystander, caplog)
    finally:
        client.destroy(victim)
        client.destroy(bystander)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_killing_the_agent_fails_its_command_cleanly_and_a_new_agent_serves_the_next(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    victim, bystander = client.create().id, client.create().id
    try:
        wait_for_the_agent(client, victim)
        killer = AGENT_PID + "\nimport signal\nos.kill(agent(), signal.SIGKILL)\n"
        with pytest.raises(Conflict, match="the workspace's agent stopped while the command ran"):
            client.exec(victim, ["python3", "-c", killer], timeout_s=20)
        the_rest_is_untouched(client, victim, bystander, caplog)
    finally:
        client.destroy(victim)
        client.destroy(bystander)
