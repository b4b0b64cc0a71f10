"""One end-to-end scenario, the same on every provider that can run here.

Create, exec, a streamed exec with stdin, write and read a file, extend, a runtime killed
with SIGKILL and started again (the workspace is reconciled and still serves), destroy,
and nothing left behind. ``gvisor`` runs on the real Docker daemon under runsc; ``e2b``
runs the real SDK against the E2B stand-in's REST API, with the stand-in's commands and
files behind each sandbox (``tests.e2b_standin``), in a process started by
``tests.e2b_serve``; ``firecracker`` runs through ``workspaces firecracker-manager`` on the
stand-in for Firecracker (``tests.firecracker_standin``: Firecracker's API checked against
its Swagger file, the guest's real init and agent run in namespaces over the real root
filesystem).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2b import Sandbox, SandboxQuery

from runtime.config import load_settings
from runtime.providers.base import LABEL_ID
from runtime.providers.firecracker import local_machines
from runtime.providers.firecracker.guest import GuestBuild
from runtime.providers.firecracker.network import HostNetwork
from runtime.wire import Client
from tests.conftest import FIRECRACKER_STANDIN, leftover_containers
from tests.e2b_serve import sandbox_ids
from tests.e2b_standin import ControlPlane
from tests.helpers import poll_until
from tests.serving import WORKSPACES, Server, serve_env

pytestmark = pytest.mark.docker

LIVE_KEY = os.environ.get("E2B_API_KEY", "")


@dataclass
class Served:
    """A runtime process on one provider, restartable on the same state."""

    provider: str
    env: dict[str, str]
    argv: list[str]
    plane: ControlPlane | None
    server: Server | None = None

    def start(self) -> None:
        self.server = Server(self.env, self.argv)
        self.server.wait_ready()

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def client(self) -> Client:
        token = (Path(self.env["WORKSPACE_STATE_DIR"]) / "token").read_text().strip()
        return Client(self.env["WORKSPACE_ZMQ_ENDPOINT"], token, timeout_s=120)

    def sandbox_end(self, workspace_id: str) -> float:
        """When E2B's timeout of the workspace's sandbox ends (through the SDK's own listing)."""
        where = {"api_key": self.plane.api_key, "api_url": self.plane.url} if self.plane else {"api_key": LIVE_KEY}
        pages = Sandbox.list(query=SandboxQuery(metadata={LABEL_ID: workspace_id}), **where)  # type: ignore[arg-type]
        (info,) = pages.next_items()
        return info.end_at.timestamp()


@contextlib.contextmanager
def firecracker_manager(tmp_path: Path, guest: GuestBuild) -> Iterator[dict[str, str]]:
    """``workspaces firecracker-manager`` on the stand-in for Firecracker, with a bridge of its own.

    Yields the runtime's variables for it; afterwards, whatever VM a failed test left is
    removed and the bridge torn down.
    """
    state, sock = tmp_path / "manager", tmp_path / "firecracker.sock"
    network = {
        "FIRECRACKER_BRIDGE": f"awft{secrets.token_hex(2)}",
        "FIRECRACKER_SUBNET": f"172.30.{secrets.randbelow(256)}.0/24",
    }
    boot = {
        "FIRECRACKER_BIN": str(FIRECRACKER_STANDIN),
        "FIRECRACKER_KERNEL": str(guest.vmlinux),
        "FIRECRACKER_INITRD": str(guest.initrd),
    }
    manager = Server(serve_env(state, **boot, **network), [*WORKSPACES, "firecracker-manager", "--socket", str(sock)])
    try:
        manager.wait_ready()
        yield {"FIRECRACKER_MANAGER_SOCKET": str(sock), "WORKSPACE_DEFAULT_DISK": "1G"}
    finally:
        manager.stop()
        machines = local_machines(load_settings(env=serve_env(state, **boot, **network)))
        left = [vm.workspace_id for vm in machines.states()]
        for workspace_id in left:
            machines.destroy(workspace_id)
        HostNetwork(network["FIRECRACKER_BRIDGE"], network["FIRECRACKER_SUBNET"]).teardown()
    assert left == [], "the runtime left microVMs"


@pytest.fixture(params=["gvisor", "e2b", "e2b-live", "firecracker", "firecracker-live"])
def served(request: pytest.FixtureRequest, tmp_path: Path, docker_client: Any) -> Iterator[Served]:
    provider = str(request.param)
    variables = {"WORKSPACE_DEFAULT_PROVIDER": provider, "WORKSPACE_HEALTH_INTERVAL_S": "1"}
    plane = None
    argv = [*WORKSPACES, "serve"]
    stack = contextlib.ExitStack()
    if provider == "firecracker":
        variables |= stack.enter_context(firecracker_manager(tmp_path, request.getfixturevalue("firecracker_guest")))
    elif provider == "firecracker-live":  # opt-in: real microVMs, the runtime owning them (root)
        if not (os.environ.get("FIRECRACKER_LIVE") and os.environ.get("FIRECRACKER_BIN")):
            pytest.skip(
                "set FIRECRACKER_LIVE=1, FIRECRACKER_BIN and FIRECRACKER_KERNEL on a host whose KVM boots guests"
            )
        provider = variables["WORKSPACE_DEFAULT_PROVIDER"] = "firecracker"
    if provider == "e2b-live":  # opt-in: real E2B, through `workspaces serve` as operators run it
        if not LIVE_KEY:
            pytest.skip("set E2B_API_KEY to run the scenario against real E2B")
        provider = variables["WORKSPACE_DEFAULT_PROVIDER"] = "e2b"
    elif provider == "e2b":
        plane = ControlPlane(image=load_settings(env={}).default_image)
        plane.start()
        variables |= {"E2B_API_KEY": plane.api_key, "E2B_API_URL": plane.url}
        argv = [sys.executable, "-m", "tests.e2b_serve"]
    served = Served(provider, serve_env(tmp_path / "state", **variables), argv, plane)
    try:
        served.start()
        yield served
    finally:
        served.stop()
        stack.close()
        if plane is not None:
            plane.close()
        if served.server is not None:
            instance = served.server.instance()
            assert leftover_containers(docker_client, instance) == [], "the runtime left containers"


def run_streamed(client: Client, workspace_id: str) -> tuple[bytes, int | None]:
    """A streamed ``cat`` fed through its open stdin; its output and exit code."""
    process = client.spawn(workspace_id, ["sh", "-c", "cat; echo done >&2"], stdin_open=True)
    client.exec_stdin(workspace_id, process.process_id, b"streamed line\n")
    client.exec_stdin(workspace_id, process.process_id, close=True)
    poll_until(lambda: client.exec_output(workspace_id, process.process_id).exit is not None)
    page = client.exec_output(workspace_id, process.process_id)
    stdout = b"".join(chunk.data for chunk in page.chunks if chunk.stream == "stdout")
    assert page.exit is not None
    return stdout, page.exit.exit_code


def test_the_same_scenario_runs_on_every_provider(served: Served) -> None:
    with served.client() as client:
        record = client.create(ttl_seconds=300)
        assert record.state == "ready" and record.provider == served.provider
        workspace_id = record.id

        result = client.exec(workspace_id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
        assert client.exec(workspace_id, "pwd").stdout == b"/workspace\n"
        timed = client.exec(workspace_id, ["sleep", "30"], timeout_s=1)
        assert timed.timed_out

        assert run_streamed(client, workspace_id) == (b"streamed line\n", 0)

        client.write_file(workspace_id, "notes/a.txt", b"hello \x00\xff bytes", mode=0o600)
        assert client.read_file(workspace_id, "/workspace/notes/a.txt") == b"hello \x00\xff bytes"
        assert client.exec(workspace_id, ["stat", "-c", "%a", "notes/a.txt"]).stdout == b"600\n"

        before = record.expires_at or 0.0
        extended = client.extend(workspace_id, 1800)
        assert (extended.expires_at or 0.0) > before + 1000
        if served.provider == "e2b":  # E2B's own clock follows the workspace's expiry
            poll_until(lambda: served.sandbox_end(workspace_id) > time.time() + 1500)

    served.kill()  # no chance to clean up, as in a crash
    served.start()
    with served.client() as client:
        assert client.get(workspace_id).state == "ready"
        assert client.read_file(workspace_id, "notes/a.txt") == b"hello \x00\xff bytes"
        assert client.exec(workspace_id, ["echo", "after the restart"]).stdout == b"after the restart\n"
        if served.plane is not None:  # the new process found the sandbox by connecting to it
            assert any(request.path.endswith("/connect") for request in served.plane.requests)
        client.destroy(workspace_id)
        assert client.get(workspace_id).state == "destroyed"
    if served.plane is not None:
        assert sandbox_ids(served.plane) == []
