"""A `workspaces serve` on runc that tests drive from outside, and the check that its log and Docker agree.

The fuzz and load tests talk to the runtime over real ZeroMQ, kill it with SIGKILL and
start it again on the same state directory; runc keeps their many workspaces fast
(isolation is not their point). ``assert_log_and_docker_agree`` is their verdict on
leaks: the state log (as ``list`` serves it) and the containers and volumes carrying the
runtime's instance label describe the same workspaces.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import zmq

from runtime.providers.base import LABEL_ID, LABEL_INSTANCE
from runtime.wire import Client
from tests.conftest import remove_leftovers
from tests.serving import Server, serve_env

__all__ = ["RawDealer", "RuncServe", "assert_log_and_docker_agree"]

_SERVE_ON_RUNC = textwrap.dedent(
    """
    import sys
    from runtime.providers.docker import DockerProvider
    from runtime.cli import main

    DockerProvider.__init__.__kwdefaults__["runtimes"] = ("runc",)
    sys.exit(main(["serve"]))
    """
)


class RuncServe:
    """One state directory served by successive `workspaces serve` processes whose workspaces run on runc.

    Args:
        state_dir: The runtime's state directory (kept across restarts).
        docker_client: The Docker SDK client (for leftovers).
        token: The auth token.
        variables: More environment variables for the server.
    """

    def __init__(self, state_dir: Path, docker_client: Any, token: str, **variables: str) -> None:
        self.token = token
        self.env = serve_env(
            state_dir,
            WORKSPACE_AUTH_TOKEN=token,
            WORKSPACE_DEFAULT_CPU="0.25",
            WORKSPACE_DEFAULT_MEMORY="256M",
            WORKSPACE_DEFAULT_DISK="1G",
            WORKSPACE_HEALTH_INTERVAL_S="1",
            **variables,
        )
        self.endpoint = self.env["WORKSPACE_ZMQ_ENDPOINT"]
        self.docker = docker_client
        self.server: Server | None = None
        self.instance = ""
        self.logs: list[str] = []

    def start(self) -> Server:
        """Start a server on the state directory and wait until it serves."""
        self.server = Server(self.env, argv=[sys.executable, "-c", _SERVE_ON_RUNC])
        self.server.wait_ready()
        self.instance = self.instance or self.server.instance()
        return self.server

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        assert self.server is not None
        self.server.kill()
        self.logs.append(self.server.log)

    def client(self, timeout_s: float = 120, identity: bytes | None = None) -> Client:
        return Client(self.endpoint, self.token, timeout_s=timeout_s, identity=identity)

    @property
    def log(self) -> str:
        """Every server's log so far, the running one last."""
        return "\n".join([*self.logs, self.server.log if self.server is not None else ""])

    def close(self) -> list[str]:
        """Stop the server; remove and return whatever it left in Docker."""
        if self.server is not None and self.server.process.poll() is None:
            self.server.stop()
        return remove_leftovers(self.docker, self.instance) if self.instance else []


def _docker_inventory(docker_client: Any, instance: str) -> tuple[dict[str, str], set[str]]:
    """Workspace id -> container state, and the ids of volumes, of everything labelled with ``instance``."""
    labels = {"label": f"{LABEL_INSTANCE}={instance}"}
    containers = {c["Labels"][LABEL_ID]: c["State"] for c in docker_client.api.containers(all=True, filters=labels)}
    volumes = {v["Labels"][LABEL_ID] for v in docker_client.api.volumes(filters=labels).get("Volumes") or []}
    return containers, volumes


def assert_log_and_docker_agree(client: Client, docker_client: Any, instance: str) -> dict[str, Any]:
    """The state log and Docker describe the same workspaces, with no work left half-done.

    Call it when no create or destroy is running. Every workspace ``list`` shows is
    ``ready`` with a running container (or ``failed``, which keeps what is left for
    ``destroy``); every labelled container or volume belongs to a workspace ``list``
    shows. Returns the listed records by id.
    """
    listed = {record.id: record for record in client.list()}
    containers, volumes = _docker_inventory(docker_client, instance)
    for workspace_id, record in listed.items():
        assert record.state in ("ready", "failed"), f"{workspace_id} is left {record.state}: {record.error}"
        if record.state == "ready":
            assert containers.get(workspace_id) == "running", f"{workspace_id} is ready, its container is not running"
    strays = (set(containers) | volumes) - set(listed)
    assert not strays, f"containers or volumes without a live workspace in the log: {sorted(strays)}"
    return listed


class RawDealer:
    """A bare DEALER socket with a fixed routing id: requests as raw frames, replies as decoded maps.

    Args:
        endpoint: The runtime's request endpoint.
        identity: The routing id (kept across reconnects, so retries are recognised).
    """

    def __init__(self, endpoint: str, identity: bytes) -> None:
        self.identity = identity
        self._socket = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.ROUTING_ID, identity)
        self._socket.connect(endpoint)

    def send(self, frames: list[bytes]) -> None:
        """Send one message of ``frames`` (a request is one frame; hostile clients send others)."""
        self._socket.send_multipart(frames)

    def recv(self, timeout_s: float) -> tuple[bytes, Any] | None:
        """The next reply (its bytes and its decoded value), or ``None`` if none came within ``timeout_s``."""
        if not self._socket.poll(max(1, int(timeout_s * 1000))):
            return None
        frame = self._socket.recv()
        try:
            return frame, msgspec.msgpack.decode(frame)
        except msgspec.DecodeError:
            return frame, None

    def close(self) -> None:
        self._socket.close()
