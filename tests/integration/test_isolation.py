"""Network isolation: workspaces cannot reach each other or the control plane, but reach out."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import ProviderUnavailable
from runtime.providers.docker import ICC_OPTION, MANAGED_NETWORK
from runtime.wire import Client
from tests.conftest import MakeDockerRuntime

pytestmark = pytest.mark.docker

CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print('connected')"


@pytest.fixture
def client(docker_runtime: Runtime) -> Iterator[Client]:
    with docker_runtime.client(timeout_s=120) as c:
        yield c


def address(docker_client: Any, workspace_id: str, network: str = MANAGED_NETWORK) -> str:
    networks = docker_client.containers.get(f"aw-{workspace_id}").attrs["NetworkSettings"]["Networks"]
    return str(networks[network]["IPAddress"])


def gateway(docker_client: Any, network: str = MANAGED_NETWORK) -> str:
    return str(docker_client.networks.get(network).attrs["IPAM"]["Config"][0]["Gateway"])


def connect(client: Client, workspace_id: str, host: str, port: int) -> bool:
    result = client.exec(workspace_id, ["python3", "-c", CONNECT, host, str(port)], timeout_s=30)
    return result.exit_code == 0 and result.stdout == b"connected\n"


class HostListener:
    """A TCP listener on the host, on all addresses, accepting in the background."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
            conn.close()
            self.accepted.set()
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def test_the_managed_network_has_inter_container_traffic_disabled(client: Client, docker_client: Any) -> None:
    record = client.create()
    try:
        assert docker_client.networks.get(MANAGED_NETWORK).attrs["Options"][ICC_OPTION] == "false"
    finally:
        client.destroy(record.id)


def test_workspaces_cannot_reach_each_other(client: Client, docker_client: Any) -> None:
    listener, prober = client.create(), client.create()
    try:
        client.exec(listener.id, "nohup python3 -m http.server 8080 >/dev/null 2>&1 &")
        ready = "for i in $(seq 100); do curl -s -o /dev/null localhost:8080 && exit 0; sleep 0.1; done; exit 1"
        assert client.exec(listener.id, ready).exit_code == 0, "the listener never came up"
        assert connect(client, listener.id, address(docker_client, listener.id), 8080)  # it is reachable at all
        assert not connect(client, prober.id, address(docker_client, listener.id), 8080)
    finally:
        client.destroy(listener.id)
        client.destroy(prober.id)


def test_workspaces_reach_outward_but_not_the_control_plane(
    client: Client, docker_runtime: Runtime, docker_client: Any
) -> None:
    record = client.create()
    host = HostListener()
    try:
        # Out of the workspace's network: a port on the host, bound on all addresses.
        assert connect(client, record.id, gateway(docker_client), host.port)
        assert host.accepted.wait(10)
        # The runtime's own endpoints bind loopback: unreachable from a workspace.
        port = int(docker_runtime.endpoint.rsplit(":", 1)[1])
        assert not connect(client, record.id, gateway(docker_client), port)
        assert not connect(client, record.id, "127.0.0.1", port)
    finally:
        host.close()
        client.destroy(record.id)


def test_workspaces_reach_the_internet_when_the_host_does(client: Client) -> None:
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=5).close()
    except OSError:
        pytest.skip("this host cannot reach deb.debian.org")
    record = client.create()
    try:
        result = client.exec(record.id, "curl -s -m 15 -o /dev/null -w '%{http_code}' http://deb.debian.org/debian/")
        assert result.stdout == b"200"
    finally:
        client.destroy(record.id)


@pytest.fixture
def named_network(docker_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"awtest-{request.param}"
    options = {ICC_OPTION: "false"} if request.param == "icc-off" else {}
    docker_client.networks.create(name, driver="bridge", options=options)
    yield name
    docker_client.networks.get(name).remove()


@pytest.mark.parametrize("named_network", ["icc-on"], indirect=True)
def test_a_named_network_that_allows_inter_container_traffic_is_refused(
    make_docker_runtime: MakeDockerRuntime, named_network: str
) -> None:
    runtime = make_docker_runtime(network_name=named_network)
    with runtime.client() as client:
        [status] = client.providers()
        assert not status.healthy
        assert f"network {named_network} lets containers reach each other" in status.detail
        with pytest.raises(ProviderUnavailable, match="lets containers reach each other"):
            client.create()


@pytest.mark.parametrize("named_network", ["icc-off"], indirect=True)
def test_a_named_network_with_inter_container_traffic_off_is_used(
    make_docker_runtime: MakeDockerRuntime, named_network: str, docker_client: Any
) -> None:
    runtime = make_docker_runtime(network_name=named_network)
    with runtime.client(timeout_s=120) as client:
        record = client.create()
        try:
            assert address(docker_client, record.id, named_network)
        finally:
            client.destroy(record.id)
