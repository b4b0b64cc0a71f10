"""Heavy load against one runtime, then the same with the runtime killed (SIGKILL) and restarted mid-run.

50 clients (threads, each its own DEALER with its own routing id) send 1,000 mixed
requests each: ping, get, list, exec (``echo``, ``true``, and an append that records each
run) on a few shared workspaces, write_file/read_file, and a few create/destroy of their
own. Every request is tracked by id: it is answered (none lost), each send gets at most
one reply and a request sent once exactly one (none duplicated), and its result is right.
Afterwards the state log and Docker agree and nothing is left behind.

Across a crash, what the runtime promises (docs/crash-safety.md, runtime/wire/dedupe.py,
runtime/state/journal.py): replies kept for retries live in memory only, but ``create`` is
exactly-once across the restart (its key is stored with the workspace) and ``exec`` is
at-most-once (the request journal): a retry reaching the new run of an exec the old run
began is refused with a ``conflict`` saying so. So the crash test asserts exactly that: a
create retried across the restart made at most one live workspace (counted by a label
naming the request), every acknowledged workspace is there, ready and running; every
append ran at most once - once if it was answered, and at most once if its retry was
refused - and only a request sent more than once is ever refused.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.messages import encode
from tests.consistency import RawDealer, RuncServe, assert_log_and_docker_agree
from tests.helpers import poll_until

pytestmark = [pytest.mark.docker, pytest.mark.long]

TOKEN = "load-test-token-0123456789abcdef"
CLIENTS = 50
REQUESTS = 1000
SHARED = 4
RETRY_AFTER_S = 5.0
RESTARTED = "was in flight when the runtime restarted"
"""The refusal of a retry, across a restart, of an exec the previous run began."""
GIVE_UP_S = 180.0
CREATE_AT, DESTROY_AT, CREATE_AGAIN_AT = 100, 300, 600


@dataclass
class Tracked:
    """One request: how often it was sent and answered, and its final reply."""

    op: str
    sends: int = 0
    replies: int = 0
    final: dict[str, Any] | None = None

    @property
    def refused(self) -> bool:
        """Whether the final reply refused a retry across the restart (the request may have run)."""
        error = (self.final or {}).get("error") or {}
        return error.get("code") == "conflict" and RESTARTED in error.get("message", "")


@dataclass
class Tally:
    """What every client did, for the verdict (each client writes only its own entries)."""

    requests: dict[str, Tracked] = field(default_factory=dict)
    appends: dict[int, list[str]] = field(default_factory=dict)
    creates: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # client -> (request id, workspace id)
    destroyed: dict[int, set[str]] = field(default_factory=dict)
    strays: list[str] = field(default_factory=list)
    answered: list[int] = field(default_factory=lambda: [0] * CLIENTS)  # by client: no counter shared by threads
    creating: list[bool] = field(default_factory=lambda: [False] * CLIENTS)

    def sent(self) -> int:
        return sum(t.sends for t in self.requests.values())


class LoadClient:
    """One client: a DEALER with its own routing id, one request at a time, retried with the same id."""

    def __init__(self, index: int, serve: RuncServe, tally: Tally, shared: list[str], tag: str) -> None:
        self.index = index
        self.wire = RawDealer(serve.endpoint, f"load-{tag}-{index}".encode())
        self.tally, self.shared, self.tag = tally, shared, tag
        self.home = shared[index % len(shared)]
        self.prefix = f"{tag}-c{index}"
        self.own: str | None = None
        self.written = b""
        tally.appends[index], tally.creates[index], tally.destroyed[index] = [], [], set()

    def call(self, op: str, args: dict[str, Any], request_id: str, *, twice: bool = False) -> Any:
        """Send until a final reply comes; return its result (a failure ends the test).

        ``None`` for an ``exec`` refused as begun by the runtime before its restart.
        """
        tracked = self.tally.requests[request_id] = Tracked(op)
        frame = encode({"id": request_id, "op": op, "token": TOKEN, "args": args})
        give_up = time.monotonic() + GIVE_UP_S
        while tracked.final is None:
            assert time.monotonic() < give_up, f"{request_id} ({op}) was never answered"
            for _ in range(2 if twice and tracked.sends == 0 else 1):
                self.wire.send([frame])
                tracked.sends += 1
            reply = self._await(request_id, RETRY_AFTER_S)
            if reply is None:
                continue  # lost with the runtime, or still running: the same id again
            error = reply.get("error") or {}
            if reply["ok"] or not error.get("retryable"):
                tracked.final = reply
            else:
                self._await(None, 0.2)  # back off, taking stray replies meanwhile
        self.tally.answered[self.index] += 1
        if op == "exec" and tracked.refused:
            return None
        assert tracked.final["ok"], f"{request_id} ({op} {args}) failed: {tracked.final['error']}"
        return tracked.final["result"]

    def _await(self, request_id: str | None, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            got = self.wire.recv(remaining)
            if got is None:
                return None
            reply = got[1]
            tracked = self.tally.requests.get(reply.get("id", ""))
            if tracked is None:
                self.tally.strays.append(f"a reply to nothing sent: {reply}")
                continue
            tracked.replies += 1
            if tracked.replies > tracked.sends:
                self.tally.strays.append(f"{reply['id']} sent {tracked.sends} time(s), answered {tracked.replies}")
            if reply["id"] == request_id:
                return reply  # type: ignore[no-any-return]
        return None

    def run(self) -> None:
        for n in range(REQUESTS):
            self.step(n, f"{self.prefix}-{n}")
        last = f"{self.prefix}-last"
        self.call("ping", {}, last)
        while self._await(None, 0.5) is not None:  # late duplicates, if any, come now
            pass
        self.wire.close()

    def step(self, n: int, rid: str) -> None:
        if n in (CREATE_AT, CREATE_AGAIN_AT):
            self.tally.creating[self.index] = True
            labels = {"load": self.tag, "client": str(self.index), "request": rid}
            record = self.call("create", {"labels": labels}, rid)
            self.tally.creating[self.index] = False
            assert record["state"] == "ready" and record["labels"] == labels
            self.tally.creates[self.index].append((rid, record["id"]))
            self.own = record["id"]
            return
        if n == DESTROY_AT and self.own is not None:
            assert self.call("destroy", {"workspace_id": self.own}, rid) == {}
            self.tally.destroyed[self.index].add(self.own)
            self.own = None
            return
        kind = n % 20
        target = self.shared[n % len(self.shared)]
        if kind < 4:
            assert self.call("ping", {}, rid)["version"]
        elif kind < 7:
            assert self.call("get", {"workspace_id": target}, rid)["state"] == "ready"
        elif kind == 7:
            listed = self.call("list", {"labels": {"load": self.tag, "shared": "yes"}}, rid)
            assert sorted(record["id"] for record in listed) == sorted(self.shared)
        elif kind < 11:
            result = self.call("exec", {"workspace_id": target, "cmd": ["echo", rid]}, rid)
            assert result is None or (result["exit_code"], result["stdout"]) == (0, f"{rid}\n".encode())
        elif kind < 13:
            result = self.call("exec", {"workspace_id": self.own or target, "cmd": ["true"]}, rid)
            assert result is None or result["exit_code"] == 0
        elif kind < 15:
            script = f"mkdir -p /workspace/{self.prefix} && echo {rid} >> /workspace/{self.prefix}/runs"
            # One in four appends is sent twice at once, as a client retrying too early would.
            result = self.call("exec", {"workspace_id": self.home, "cmd": ["sh", "-c", script]}, rid, twice=n % 4 == 1)
            assert result is None or result["exit_code"] == 0
            self.tally.appends[self.index].append(rid)
        elif kind < 17:
            self.written = f"{rid} {secrets.token_hex(8)}".encode()
            args = {"workspace_id": self.home, "path": f"{self.prefix}/data", "data": self.written}
            assert self.call("write_file", args, rid) == {}
        elif self.written:
            args = {"workspace_id": self.home, "path": f"{self.prefix}/data"}
            assert self.call("read_file", args, rid)["data"] == self.written
        else:
            assert self.call("stats", {}, rid)["workspaces"] >= SHARED


@pytest.fixture
def serve(tmp_path: Path, docker_client: Any) -> Iterator[RuncServe]:
    served = RuncServe(tmp_path / "state", docker_client, TOKEN, WORKSPACE_MAX_CONCURRENT="200")
    try:
        yield served
    finally:
        leaked = served.close()
    assert not leaked, f"left behind: {leaked}"


def run_load(serve: RuncServe, tag: str, during: Callable[[Tally], None] | None = None) -> tuple[Tally, list[str]]:
    """Run every client against ``serve``, ``during`` beside them (e.g. a crash); return the tally and shared ids."""
    with serve.client() as admin:
        shared = [admin.create(labels={"load": tag, "shared": "yes"}).id for _ in range(SHARED)]
    tally = Tally()
    clients = [LoadClient(index, serve, tally, shared, tag) for index in range(CLIENTS)]
    began = time.monotonic()
    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        runs = [pool.submit(client.run) for client in clients]
        beside = pool.submit(during, tally) if during is not None else None
        for done in runs:
            done.result()
        if beside is not None:
            beside.result()
    took = time.monotonic() - began
    doubled = sum(1 for rids in tally.appends.values() for rid in rids if int(rid.rsplit("-", 1)[1]) % 4 == 1)
    retried = tally.sent() - len(tally.requests) - doubled
    creates = [t for t in tally.requests.values() if t.op == "create"]
    print(
        f"\n{tag}: {len(tally.requests)} requests, {tally.sent()} sends, {sum(tally.answered)} answered, "
        f"{doubled} sent twice on purpose, {retried} resends after no reply or a retryable error "
        f"({sum(1 for t in creates if t.sends > 1)} of {len(creates)} creates), "
        f"in {took:.1f} s ({len(tally.requests) / took:.0f} requests/s)"
    )
    return tally, shared


def check_answers(tally: Tally) -> None:
    """Every request answered; at most one reply per send; exactly one for a request sent once."""
    assert not tally.strays, tally.strays[:10]
    assert len(tally.requests) == CLIENTS * (REQUESTS + 1) == sum(tally.answered)
    assert all(t.final is not None for t in tally.requests.values())
    assert not [rid for rid, t in tally.requests.items() if t.sends == 1 and t.replies != 1]
    assert not [rid for rid, t in tally.requests.items() if not 1 <= t.replies <= t.sends]
    # Only a retry can be refused as begun before a restart: a request sent once never is.
    assert not [rid for rid, t in tally.requests.items() if t.refused and t.sends == 1]


def runs_of_appends(serve: RuncServe, tally: Tally, shared: list[str], tag: str) -> dict[str, int]:
    """How many times each append ran, from the files the appends wrote."""
    counted: Counter[str] = Counter()
    with serve.client() as admin:
        for index in range(CLIENTS):
            lines = admin.read_file(shared[index % len(shared)], f"{tag}-c{index}/runs").decode().split()
            counted.update(lines)
    assert set(counted) <= {rid for rids in tally.appends.values() for rid in rids}
    return counted


def check_workspaces(serve: RuncServe, tally: Tally, shared: list[str], tag: str) -> None:
    """Each create made one live workspace at most (by its label), every acknowledged one is there; no leaks."""
    with serve.client() as admin:
        listed = assert_log_and_docker_agree(admin, serve.docker, serve.instance)
        for record in listed.values():
            assert record.state == "ready", f"{record.id} is {record.state}: {record.error}"
        for index in range(CLIENTS):
            for rid, workspace_id in tally.creates[index]:
                made = [r for r in listed.values() if r.labels.get("request") == rid]
                if workspace_id in tally.destroyed[index]:
                    assert not made and admin.get(workspace_id).state == "destroyed"
                else:
                    assert [r.id for r in made] == [workspace_id], f"create {rid} made {made}"
        assert {r.id for r in listed.values() if r.labels.get("load") == tag} == set(shared) | {
            workspace_id
            for index in range(CLIENTS)
            for _, workspace_id in tally.creates[index]
            if workspace_id not in tally.destroyed[index]
        }
        for workspace_id in listed:
            admin.destroy(workspace_id)
        assert admin.list() == []


def test_fifty_clients_a_thousand_requests_each_are_all_answered_once_and_right(serve: RuncServe) -> None:
    serve.start()
    tally, shared = run_load(serve, "steady")
    check_answers(tally)
    runs = runs_of_appends(serve, tally, shared, "steady")
    appends = [rid for rids in tally.appends.values() for rid in rids]
    assert not [rid for rid, t in tally.requests.items() if t.refused], "a request was refused without a restart"
    assert all(runs[rid] == 1 for rid in appends), "an append ran other than once"
    doubled = sum(1 for rid in appends if tally.requests[rid].sends > 1)
    print(f"steady: {len(appends)} appends ({doubled} sent twice) each ran once; faults injected: 0")
    check_workspaces(serve, tally, shared, "steady")
    assert "Traceback" not in serve.log


def test_a_runtime_killed_and_restarted_mid_load_loses_and_doubles_nothing_it_promised(serve: RuncServe) -> None:
    serve.start()
    killed = threading.Event()

    def crash(tally: Tally) -> None:
        # Mid-run, while a create is in flight: the moment its exactly-once promise matters.
        half = CLIENTS * REQUESTS // 2
        poll_until(lambda: sum(tally.answered) >= half and any(tally.creating), timeout_s=120, every_s=0.005)
        serve.kill()
        killed.set()
        serve.start()

    tally, shared = run_load(serve, "crash", crash)
    assert killed.is_set()
    check_answers(tally)
    runs = runs_of_appends(serve, tally, shared, "crash")
    appends = [rid for rids in tally.appends.values() for rid in rids]
    # At most once, exactly: answered means it ran once; refused (begun before the kill) means it ran once or never.
    assert not [rid for rid in appends if runs[rid] > 1], "an append ran twice"
    assert all(runs[rid] == 1 for rid in appends if not tally.requests[rid].refused), "an answered append did not run"
    refused = [rid for rid, t in tally.requests.items() if t.refused]
    refused_appends = [rid for rid in appends if tally.requests[rid].refused]
    print(
        f"crash: faults injected: 1 SIGKILL + restart; {len(appends)} appends, "
        f"{sum(1 for rid in appends if tally.requests[rid].sends > 1)} resent, none ran twice; "
        f"{len(refused)} exec retries refused as begun before the restart ({len(refused_appends)} appends: "
        f"{sum(runs[rid] for rid in refused_appends)} of them had run)"
    )
    check_workspaces(serve, tally, shared, "crash")
