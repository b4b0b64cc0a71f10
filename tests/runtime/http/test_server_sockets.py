"""The HTTP server's sockets: responses are not held back by Nagle's algorithm."""

from __future__ import annotations

import os
import socket

import httpx
import psutil

from runtime.app import Runtime
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider


def test_connections_the_server_accepts_have_tcp_nodelay(make_settings: MakeSettings) -> None:
    # Without TCP_NODELAY, a response written as headers then body waits for the client's
    # delayed ACK: ~40 ms for every request instead of a fraction of a millisecond.
    runtime = Runtime(make_settings(http_addr="127.0.0.1:0"), providers={"gvisor": FakeProvider()}).start()
    try:
        port = int(runtime.http_address.rpartition(":")[2])
        with httpx.Client(base_url=f"http://{runtime.http_address}") as client:
            assert client.get("/healthz").status_code == 200  # the connection stays open (keep-alive)
            accepted = [
                connection
                for connection in psutil.Process().net_connections(kind="tcp")
                if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_ESTABLISHED
            ]
            assert len(accepted) == 1
            duplicate = socket.socket(fileno=os.dup(accepted[0].fd))
            try:
                assert duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            finally:
                duplicate.close()
    finally:
        runtime.stop()
