"""Crash safety with real Docker and real processes.

`workspaces serve` is killed with SIGKILL at bad moments and started again on the same
state directory. After every restart: each acknowledged workspace is there, ready and
still the same workspace (a marker file written before the crash reads back); no
container or volume with this runtime's labels lacks a live record; no ready record
points at a container that is not running. An exec whose reply the kill lost is not run
again when its client retries it against the next run.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from actors.workspace import WorkspaceActor
from runtime.errors import Conflict, InternalError, NotFound, WorkspaceError
from runtime.messages import StoredWorkspace, decode_stored, encode
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE
from runtime.wire import Client, Subscriber
from tests.conftest import MakeDockerRuntime, remove_leftovers
from tests.consistency import RawDealer
from tests.helpers import poll_until, wait_for_event, workspace_event
from tests.serving import Server, serve_env

pytestmark = pytest.mark.docker

TOKEN = "crash-safety-test-token"


class Crashable:
    """One state directory served by successive `workspaces serve` processes."""

    def __init__(self, tmp_path: Path, docker_client: Any, **variables: str) -> None:
        self.state_dir = tmp_path / "state"
        self.env = serve_env(
            self.state_dir,
            WORKSPACE_AUTH_TOKEN=TOKEN,
            WORKSPACE_HEALTH_INTERVAL_S="1",
            WORKSPACE_MAX_CONCURRENT="30",
            **variables,
        )
        self.docker = docker_client
        self.server: Server | None = None
        self.instance = ""
        self.logs: list[str] = []

    def start(self) -> Server:
        self.server = Server(self.env)
        self.server.wait_ready()
        self.instance = self.server.instance()
        return self.server

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.logs.append(self.server.log)

    def client(self, timeout_s: float = 120, identity: bytes | None = None) -> Client:
        return Client(self.env["WORKSPACE_ZMQ_ENDPOINT"], TOKEN, timeout_s=timeout_s, identity=identity)

    def subscribe(self, *topics: str) -> Subscriber:
        return Subscriber(self.env["WORKSPACE_ZMQ_EVENTS_ENDPOINT"], topics, token=TOKEN)

    def backend(self) -> dict[str, bool]:
        """Workspace id -> running, for every container and lone volume with this instance's label."""
        labels = {"label": f"{LABEL_INSTANCE}={self.instance}"}
        found = {
            c["Labels"][LABEL_ID]: c["State"] == "running" for c in self.docker.api.containers(all=True, filters=labels)
        }
        for volume in self.docker.api.volumes(filters=labels).get("Volumes") or []:
            found.setdefault(volume["Labels"][LABEL_ID], False)
        return found

    def stored(self) -> dict[str, StoredWorkspace]:
        """The state log as another process reads it (LMDB allows readers beside the server)."""
        env = lmdb.open(str(self.state_dir / "state"), readonly=True, max_dbs=4)
        try:
            workspaces = env.open_db(b"workspaces", create=False)
            with env.begin(db=workspaces) as txn:
                return {key.decode(): decode_stored(value) for key, value in txn.cursor()}
        finally:
            env.close()

    def assert_consistent(self, client: Client, acknowledged: dict[str, str]) -> None:
        for workspace_id, marker in acknowledged.items():
            assert client.get(workspace_id).state == "ready", workspace_id
            assert client.read_file(workspace_id, "/workspace/marker") == marker.encode()
        backend, stored = self.backend(), self.stored()
        for workspace_id in backend:
            entry = stored.get(workspace_id)
            assert entry is not None, f"{workspace_id} exists in Docker without a record"
            assert entry.record.state != "destroyed", f"{workspace_id} exists in Docker but was destroyed"
        for workspace_id, entry in stored.items():
            if not entry.pooled:  # nothing runs now: a create or destroy left half-done was not finished
                assert entry.record.state not in ("creating", "stopping"), f"{workspace_id} is {entry.record.state}"
            if entry.record.state == "ready":
                assert backend.get(workspace_id), f"{workspace_id} is ready but its container is not running"

    def close(self) -> None:
        if self.server is not None and self.server.process.poll() is None:
            self.server.stop()
        remove_leftovers(self.docker, self.instance)


@pytest.fixture
def crashable(tmp_path: Path, docker_client: Any) -> Iterator[Crashable]:
    served = Crashable(tmp_path, docker_client)
    yield served
    served.close()


def acknowledge(client: Client, count: int) -> dict[str, str]:
    """Create ``count`` workspaces, each with a marker file naming it."""
    made = {}
    for _ in range(count):
        record = client.create()
        client.write_file(record.id, "/workspace/marker", record.id.encode())
        made[record.id] = record.id
    return made


def in_background(call: Any) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(WorkspaceError):  # the server died under it: that is the point
            call()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_kill_during_a_create_loses_no_acknowledged_workspace_and_the_retry_runs_once(
    crashable: Crashable,
) -> None:
    crashable.start()
    with crashable.client() as client:
        acknowledged = acknowledge(client, 2)
    identity = b"create-retrying-client"

    def create() -> None:
        with crashable.client(timeout_s=5, identity=identity) as creator:
            creator.request("create", {}, request_id="create-1")

    creating = in_background(create)
    poll_until(lambda: len(crashable.backend()) > 2, every_s=0.01)  # its container is being made
    crashable.kill()
    creating.join(30)

    crashable.start()
    with crashable.client() as client:
        crashable.assert_consistent(client, acknowledged)
        with crashable.client(identity=identity) as creator:
            first = msgspec.msgpack.decode(creator.request("create", {}, request_id="create-1"))
            again = msgspec.msgpack.decode(creator.request("create", {}, request_id="create-1"))
        assert first["state"] == "ready" and again["id"] == first["id"]
        assert client.exec(first["id"], ["true"]).exit_code == 0
        assert len(crashable.backend()) == 3  # the two acknowledged and the one the retry made
        crashable.assert_consistent(client, acknowledged)


def runs_of(client: Client, workspace_id: str) -> bytes:
    """What the appends of the test below wrote so far (nothing before the first)."""
    try:
        return client.read_file(workspace_id, "/workspace/runs")
    except NotFound:
        return b""


@pytest.mark.parametrize("kill_when", ["finished", "running"])
def test_an_exec_whose_reply_a_kill_lost_is_refused_on_retry_and_never_runs_twice(
    crashable: Crashable, kill_when: str
) -> None:
    crashable.start()
    identity, args = b"appending-client", {"workspace_id": "", "cmd": "sleep 2.5; echo x >> /workspace/runs"}
    sleeping = ["pgrep", "-f", r"[s]leep 2\.5"]  # the bracket keeps pgrep's own command line from matching
    with crashable.client() as client:
        acknowledged = acknowledge(client, 1)
        (args["workspace_id"],) = acknowledged
        # The client sends its exec and does not read the reply: the kill will lose it.
        dealer = RawDealer(crashable.env["WORKSPACE_ZMQ_ENDPOINT"], identity)
        dealer.send([encode({"id": "append-1", "op": "exec", "token": TOKEN, "args": args})])
        if kill_when == "finished":
            poll_until(lambda: runs_of(client, args["workspace_id"]) == b"x\n")
        else:
            poll_until(lambda: client.exec(args["workspace_id"], sleeping).exit_code == 0)
    crashable.kill()
    dealer.close()

    crashable.start()
    with crashable.client(identity=identity) as retrying:
        for _ in range(2):  # the refusal is kept: a further retry gets it again
            with pytest.raises(Conflict, match=r"request append-1 \(exec\) was in flight when the runtime restarted"):
                retrying.request("exec", args, request_id="append-1")
    with crashable.client() as client:
        # Whatever the killed run left running in the workspace ends; the line is there at most once.
        poll_until(lambda: client.exec(args["workspace_id"], sleeping).exit_code != 0)
        runs = runs_of(client, args["workspace_id"])
        assert runs in (b"", b"x\n"), runs
        if kill_when == "finished":
            assert runs == b"x\n"
        with crashable.client(identity=identity) as retrying:  # a new id runs, as the refusal says
            assert retrying.exec(args["workspace_id"], "echo y >> /workspace/runs").exit_code == 0
        assert runs_of(client, args["workspace_id"]) == runs + b"y\n"
        crashable.assert_consistent(client, acknowledged)


def test_a_kill_during_a_destroy_is_finished_at_the_next_start(crashable: Crashable) -> None:
    crashable.start()
    with crashable.client() as client, crashable.subscribe("workspace") as events:
        acknowledged = acknowledge(client, 2)
        victim = client.create()

        def destroy() -> None:
            with crashable.client(timeout_s=5) as destroyer:
                destroyer.destroy(victim.id)

        destroying = in_background(destroy)
        wait_for_event(events, workspace_event(victim.id, state="stopping"))
        crashable.kill()
        destroying.join(30)

    crashable.start()
    with crashable.client() as client:
        assert client.get(victim.id).state == "destroyed"
        assert victim.id not in crashable.backend()
        crashable.assert_consistent(client, acknowledged)


def test_a_kill_during_a_pool_refill_leaves_no_half_made_member(tmp_path: Path, docker_client: Any) -> None:
    crashable = Crashable(tmp_path, docker_client, WORKSPACE_WARM_POOL_SIZE="2")
    try:
        crashable.start()
        poll_until(lambda: len(crashable.backend()) >= 1, every_s=0.01)  # the first member is booting
        crashable.kill()
        half_made = {key for key, entry in crashable.stored().items() if entry.record.state == "creating"}

        crashable.start()
        with crashable.client() as client:
            crashable.assert_consistent(client, {})
            assert all(crashable.stored()[key].record.state == "destroyed" for key in half_made)
            poll_until(lambda: client.stats()["pool"]["size"] == 2)
            crashable.assert_consistent(client, {})
            claimed = client.create()
            assert claimed.from_pool and client.exec(claimed.id, ["true"]).exit_code == 0
    finally:
        crashable.close()


def test_a_kill_with_twenty_workspaces_loses_none_of_them(crashable: Crashable) -> None:
    crashable.start()
    with ThreadPoolExecutor(4) as pool:

        def one(_: int) -> dict[str, str]:
            with crashable.client() as client:
                return acknowledge(client, 1)

        acknowledged = {k: v for made in pool.map(one, range(20)) for k, v in made.items()}
    assert len(acknowledged) == 20
    crashable.kill()

    server = crashable.start()
    assert "20 adopted, 0 failed (gone)" in server.log
    with crashable.client() as client:
        crashable.assert_consistent(client, acknowledged)
        assert all(client.exec(workspace_id, ["true"]).exit_code == 0 for workspace_id in acknowledged)


def test_sigterm_lets_a_running_command_finish_and_the_workspaces_are_taken_back(crashable: Crashable) -> None:
    server = crashable.start()
    with crashable.client() as client:
        acknowledged = acknowledge(client, 1)
        (workspace_id,) = acknowledged
        outcome: list[Any] = []

        def run() -> None:
            with crashable.client() as runner:
                outcome.append(runner.exec(workspace_id, "sleep 2; echo finished"))

        running = threading.Thread(target=run)
        running.start()
        poll_until(lambda: client.exec(workspace_id, ["pgrep", "-x", "sleep"]).exit_code == 0)
        assert server.stop(signal.SIGTERM) == 0
        running.join(30)
    assert outcome and outcome[0].stdout == b"finished\n"
    assert "received SIGTERM, stopping" in server.log and "runtime stopped" in server.log

    crashable.start()
    with crashable.client() as client:
        crashable.assert_consistent(client, acknowledged)


def test_exceeding_the_restart_intensity_exits_non_zero_with_a_clear_line(crashable: Crashable) -> None:
    # A provider actor that crashes at every health check: restarting does not help.
    script = textwrap.dedent(
        """
        import sys
        from actors.provider import ProviderActor
        from runtime.cli import main

        def broken(self, again=False):
            raise RuntimeError("injected fault in the health check")

        ProviderActor._check = broken
        sys.exit(main(["serve"]))
        """
    )
    env = {**crashable.env, "WORKSPACE_HEALTH_INTERVAL_S": "0.2"}
    server = Server(env, argv=[sys.executable, "-c", script])
    code = server.process.wait(60)
    server.reader.join(10)
    crashable.instance = server.instance()
    assert code == 1, server.log
    assert "provider:gvisor crashed: RuntimeError('injected fault in the health check')" in server.log
    assert "restart intensity exceeded: 4 restarts within 10 s" in server.log
    assert "exiting after the supervisor gave up" in server.log


def test_an_exception_in_one_workspace_actor_leaves_every_other_workspace_serving(
    make_docker_runtime: MakeDockerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_docker_runtime()
    with runtime.client() as client, runtime.subscribe(("actor",)) as crashes:
        victim, *others = (client.create() for _ in range(3))
        real_start_call = WorkspaceActor._start_call

        def crash_for_the_victim(self: WorkspaceActor, message: Any) -> None:
            if self._id == victim.id:
                raise RuntimeError("injected fault")
            real_start_call(self, message)

        monkeypatch.setattr(WorkspaceActor, "_start_call", crash_for_the_victim)
        with pytest.raises(InternalError, match="crashed"):
            client.exec(victim.id, ["true"])
        crash = wait_for_event(crashes, lambda event: event["workspace_id"] == victim.id)
        assert crash["restarted"] and "injected fault" in crash["reason"]
        for record in others:
            assert client.exec(record.id, ["echo", record.id]).stdout == f"{record.id}\n".encode()
        monkeypatch.setattr(WorkspaceActor, "_start_call", real_start_call)
        assert client.exec(victim.id, ["echo", "rebuilt"]).stdout == b"rebuilt\n"
        for record in (victim, *others):
            client.destroy(record.id)
