"""``ping`` and ``get`` round trips and throughput with 1, 8 and 32 concurrent clients, beside raw zmq+msgspec.

The baseline is the floor of any ZeroMQ+msgspec server: a ROUTER in its own process
that decodes each request envelope with msgspec and answers the very bytes the runtime
answers (captured from it first), with no auth, dispatch or actors. The runtime serves
from its own process (``bench.harness.server``, runsc, one workspace for ``get``).

Both are driven by the same closed loop in this process: ``clients`` DEALER sockets, each
with one request in flight, encoding each request exactly as ``runtime.wire.Client``
does and decoding each reply as it does; a reply's latency is from its send to its
receipt. Time-boxed rounds alternate between the two servers.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgspec
import zmq

from bench.common import free_port
from bench.harness.context import Context
from bench.harness.results import Scenario, Target
from bench.harness.server import RuntimeProcess
from runtime.messages import ArgsStruct, Request, WorkspaceArgs, decode_reply, encode
from runtime.wire import Client

__all__ = ["BASELINE", "Loop", "echo_server", "interleaved_loops", "run"]

BASELINE = "raw zmq+msgspec echo"
Args = ArgsStruct | Mapping[str, Any]
_ECHO = """
import sys, msgspec, zmq
answers = {op: msgspec.Raw(bytes.fromhex(value)) for op, value in (arg.split("=", 1) for arg in sys.argv[2:])}
class Request(msgspec.Struct):
    id: str
    op: str
    token: str = ""
    args: msgspec.Raw = msgspec.Raw(b"\\x80")
class Reply(msgspec.Struct):
    id: str
    ok: bool
    result: msgspec.Raw
decode, encode = msgspec.msgpack.Decoder(Request).decode, msgspec.msgpack.Encoder().encode
empty = msgspec.Raw(b"\\x80")
sock = zmq.Context().socket(zmq.ROUTER)
sock.bind(sys.argv[1])
print("ready", flush=True)
while True:
    identity, payload = sock.recv_multipart()
    request = decode(payload)
    sock.send_multipart([identity, encode(Reply(request.id, True, answers.get(request.op, empty)))])
"""


@contextmanager
def echo_server(answers: dict[str, bytes]) -> Iterator[str]:
    """The raw baseline server answering ``answers[op]`` (msgpack bytes); yields its endpoint."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-c", _ECHO, endpoint, *(f"{op}={value.hex()}" for op, value in answers.items())]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
        yield endpoint
    finally:
        process.kill()
        process.wait(30)


class Loop:
    """``clients`` DEALER sockets to one endpoint, each keeping one request of ``op`` in flight.

    Args:
        endpoint: The server.
        token: Sent in each envelope, as the client sends it.
        op: ``ping`` or ``get``.
        args: The op's arguments (a struct or a map), encoded per request as the client does.
        clients: How many sockets.
    """

    def __init__(self, endpoint: str, token: str, op: str, args: Args, clients: int) -> None:
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._token, self._op, self._args = token, op, args
        self._ids = (f"b{n}" for n in itertools.count())
        self._sockets: list[zmq.Socket[bytes]] = []
        for _ in range(clients):
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            self._sockets.append(sock)
        self._poller = zmq.Poller()
        for sock in self._sockets:
            self._poller.register(sock, zmq.POLLIN)

    def _send(self, sock: zmq.Socket[bytes], sent: dict[zmq.Socket[bytes], tuple[str, float]]) -> None:
        request_id = next(self._ids)
        args = msgspec.Raw(encode(self._args))
        sock.send(encode(Request(request_id, self._op, self._token, args)))
        sent[sock] = (request_id, time.perf_counter())

    def run(self, seconds: float) -> tuple[list[float], float]:
        """Round trips completed in ``seconds`` (each socket's last one finishes after), and the wall time."""
        sent: dict[zmq.Socket[bytes], tuple[str, float]] = {}
        latencies: list[float] = []
        began = time.perf_counter()
        deadline = began + seconds
        for sock in self._sockets:
            self._send(sock, sent)
        outstanding = len(self._sockets)
        while outstanding:
            ready = self._poller.poll(30_000)
            if not ready:
                raise TimeoutError(f"no {self._op} reply within 30 s")
            for sock, _ in ready:
                frame = sock.recv()
                now = time.perf_counter()
                reply = decode_reply(frame)
                request_id, at = sent[sock]
                if reply.id != request_id or not reply.ok:
                    raise RuntimeError(f"unexpected reply to {self._op}: {reply}")
                latencies.append(now - at)
                if now < deadline:
                    self._send(sock, sent)
                else:
                    outstanding -= 1
        return latencies, time.perf_counter() - began

    def close(self) -> None:
        """Close the sockets."""
        for sock in self._sockets:
            sock.close()


def interleaved_loops(
    loops: dict[str, Loop], rounds: int, seconds: float
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Alternate time-boxed rounds over ``loops``; samples and throughput (replies/s) per name."""
    for loop in loops.values():
        loop.run(min(0.2, seconds))  # connect and warm up
    samples: dict[str, list[float]] = {name: [] for name in loops}
    wall: dict[str, float] = dict.fromkeys(loops, 0.0)
    names = list(loops)
    for step in range(rounds):
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            latencies, elapsed = loops[name].run(seconds)
            samples[name].extend(latencies)
            wall[name] += elapsed
    return samples, {name: len(samples[name]) / wall[name] for name in names}


def run(ctx: Context) -> list[Scenario]:
    """Every op at every concurrency, ours beside the echo."""
    rounds, seconds = ctx.n(6, 2), ctx.n(1.0, 0.3)
    scenarios: list[Scenario] = []
    with RuntimeProcess("runsc") as runtime, Client(runtime.endpoint, runtime.token, timeout_s=120) as client:
        record = client.create(labels={"bench": "wire"})
        try:
            ops: dict[str, Args] = {"ping": {}, "get": WorkspaceArgs(record.id)}
            answers = {op: bytes(client.request(op, args)) for op, args in ops.items()}
            with echo_server(answers) as echo:
                for op, args in ops.items():
                    for clients in (1, 8, 32):
                        loops = {
                            "baseline": Loop(echo, runtime.token, op, args, clients),
                            "ours": Loop(runtime.endpoint, runtime.token, op, args, clients),
                        }
                        try:
                            samples, throughput = interleaved_loops(loops, rounds, seconds)
                        finally:
                            for loop in loops.values():
                                loop.close()
                        plural = "client" if clients == 1 else "clients"
                        target = None
                        if op == "ping" and clients == 1:
                            target = Target("ping p50 <= 1.2x raw zmq+msgspec round trip", ratio_max=1.2)
                        scenarios.append(
                            Scenario(
                                name=f"{op}, {clients} {plural}",
                                group="wire",
                                unit="us",
                                ours=samples["ours"],
                                baseline=samples["baseline"],
                                baseline_label=BASELINE,
                                target=target,
                                extra={
                                    "clients": clients,
                                    "throughput_ours_per_s": round(throughput["ours"]),
                                    "throughput_baseline_per_s": round(throughput["baseline"]),
                                },
                            )
                        )
                        print(f"   {op} x{clients}: {throughput['ours']:.0f}/s vs {throughput['baseline']:.0f}/s raw")
        finally:
            client.destroy(record.id)
    return scenarios
