"""Ping round trip through the client over TCP loopback, against raw ZeroMQ in the same run.

The runtime (`workspaces serve`, workspaces disabled: ping needs no Docker) and a raw
ROUTER echo server each run in their own process, as a real deployment would; the client
is this process.

    python -m bench.ping [--n 5000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import zmq

from bench.common import free_port
from bench.stats import interleaved, summary, table
from runtime.wire import Client

BASELINE = "raw zmq DEALER->ROUTER echo (baseline)"
_ECHO = """
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.bind(sys.argv[1])
print("ready", flush=True)
while True:
    sock.send_multipart(sock.recv_multipart())
"""


def _raw_ping(sock: zmq.Socket[bytes]) -> None:
    sock.send(b"\x84\xa2id\xa11\xa2op\xa4ping\xa5token\xa0\xa4args\x80")
    sock.recv()


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        raw_endpoint = f"tcp://127.0.0.1:{free_port()}"
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "ENABLE_AGENT_WORKSPACES": "false",
            "WORKSPACE_STATE_DIR": state,
            "WORKSPACE_AUTH_TOKEN": "bench-token-0123456789",
            "WORKSPACE_ZMQ_ENDPOINT": endpoint,
            "WORKSPACE_ZMQ_EVENTS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        }
        root = Path(__file__).resolve().parent.parent
        echo = subprocess.Popen([sys.executable, "-c", _ECHO, raw_endpoint], stdout=subprocess.PIPE)
        server = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "--log-level", "WARNING", "serve"], env=env, cwd=root
        )
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == b"ready"
            raw = zmq.Context.instance().socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(raw_endpoint)
            with Client(endpoint, "bench-token-0123456789", timeout_s=30) as client:
                client.ping()  # waits until the server listens
                samples = interleaved(
                    {BASELINE: lambda: _raw_ping(raw), "client.ping() -> runtime gateway": client.ping},
                    args.n,
                    args.warmup,
                )
            raw.close()
            rows = [summary(name, values) for name, values in samples.items()]
        finally:
            for process in (echo, server):
                process.terminate()
                process.wait(30)
    print(table(rows, baseline=BASELINE))


if __name__ == "__main__":
    main()
