"""The HTTP API against ZeroMQ in one run: ``providers`` and ``get`` over both doors.

The runtime (``workspaces serve`` with ``WORKSPACE_HTTP_ADDR``) runs in its own process,
as deployed. In alternating rounds this process asks it for ``providers`` and for one
workspace's record (1) over ZeroMQ with the project's client (the baseline) and (2) over
HTTP with a kept-alive connection (the standard library's ``http.client``, the thinnest
client at hand). A third process serves the very same providers JSON from a bare ASGI
app on uvicorn: the floor of any HTTP answer here, so the table shows what the runtime
adds on top of HTTP itself (bearer check, the Gateway over inproc, msgpack to JSON).

    python -m bench.http [--n 3000]
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from bench.common import free_port
from bench.stats import interleaved, summary, table
from runtime.providers.docker import MANAGED_NETWORK
from runtime.wire import Client

BASELINE = "providers over ZeroMQ (client, baseline)"
TOKEN = "bench-token-0123456789"
API = "/api/v1/agent/workspaces"
_BARE = """
import socket, sys, uvicorn
body = open(sys.argv[2], "rb").read()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            timeout_keep_alive=600)
"""


class Http:
    """GETs over one kept-alive connection."""

    def __init__(self, address: str, token: str = "") -> None:
        host, _, port = address.rpartition(":")
        self._connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str) -> bytes:
        self._connection.request("GET", path, headers=self._headers)
        response = self._connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return body

    def close(self) -> None:
        self._connection.close()


def _wait_ready(address: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            Http(address).get("/readyz")
            return
        except (OSError, AssertionError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    had_network = bool(docker.from_env().networks.list(names=[MANAGED_NETWORK]))
    with tempfile.TemporaryDirectory() as state:
        address, bare_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "ENABLE_AGENT_WORKSPACES": "true",
            "WORKSPACE_STATE_DIR": state,
            "WORKSPACE_AUTH_TOKEN": TOKEN,
            "WORKSPACE_ZMQ_ENDPOINT": endpoint,
            "WORKSPACE_ZMQ_EVENTS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "WORKSPACE_HTTP_ADDR": address,
            "WORKSPACE_DEFAULT_CPU": "1",
            "WORKSPACE_DEFAULT_MEMORY": "512M",
        }
        root = Path(__file__).resolve().parent.parent
        server = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "--log-level", "WARNING", "serve"], env=env, cwd=root
        )
        processes = [server]
        try:
            _wait_ready(address)
            with Client(endpoint, TOKEN, timeout_s=120) as client:
                workspace = client.create().id
                try:
                    api = Http(address, TOKEN)
                    providers_json = Path(state) / "providers.json"
                    providers_json.write_bytes(api.get(f"{API}/providers"))
                    bare_server = subprocess.Popen(
                        [sys.executable, "-c", _BARE, bare_address.rpartition(":")[2], str(providers_json)]
                    )
                    processes.append(bare_server)
                    _wait_ready(bare_address)
                    bare = Http(bare_address)
                    samples = interleaved(
                        {
                            BASELINE: client.providers,
                            "providers over HTTP (GET /providers)": lambda: api.get(f"{API}/providers"),
                            "get over ZeroMQ (client)": lambda: client.get(workspace),
                            "get over HTTP (GET /{id})": lambda: api.get(f"{API}/{workspace}"),
                            "bare uvicorn, same JSON (HTTP floor)": lambda: bare.get("/"),
                        },
                        args.n,
                        args.warmup,
                    )
                    api.close()
                    bare.close()
                finally:
                    client.destroy(workspace)
            rows = [summary(name, values) for name, values in samples.items()]
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
            if not had_network:
                for network in docker.from_env().networks.list(names=[MANAGED_NETWORK]):
                    network.remove()
    print(table(rows, baseline=BASELINE))


if __name__ == "__main__":
    main()
