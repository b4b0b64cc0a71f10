"""Resource limits, checked under runsc and under runc (gVisor has been said to ignore some)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.app import Runtime
from runtime.errors import Conflict
from runtime.providers.docker import PIDS_LIMIT
from runtime.wire import Client
from tests.conftest import MakeDockerRuntime
from tests.helpers import poll_until, wait_for_event, workspace_event

pytestmark = pytest.mark.docker

MEMORY_BOMB = """
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
"""
# The bomb's parent lives on, so the timeout ends it and kills its whole process group.
FORK_BOMB = "f(){ f | f & }; f; sleep 60"
BUSY_LOOP = """
import time
began, cpu = time.time(), time.process_time()
while time.time() - began < 3:
    pass
print(round((time.process_time() - cpu) / (time.time() - began), 2))
"""


@pytest.fixture(params=["runsc", "runc"])
def runtime(request: pytest.FixtureRequest, make_docker_runtime: MakeDockerRuntime) -> Runtime:
    return make_docker_runtime(runtimes=(request.param,), health_interval_s=0.5)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    with runtime.client(timeout_s=120) as c:
        yield c


def test_the_oci_runtime_is_the_one_asked_for_with_limits_and_an_init(client: Client, docker_client: Any) -> None:
    record = client.create()
    try:
        container = docker_client.containers.get(f"aw-{record.id}")
        assert container.attrs["HostConfig"]["Runtime"] == record.runtime
        assert container.attrs["HostConfig"]["PidsLimit"] == PIDS_LIMIT
        # an init reaps orphans: a finished background process leaves no zombie
        result = client.exec(record.id, "(sleep 0.1 &); sleep 0.5; ps -eo stat= | grep -c Z || true")
        assert result.stdout.strip() == b"0"
    finally:
        client.destroy(record.id)


def test_a_memory_bomb_is_stopped_at_the_limit_in_its_workspace_only(client: Client, runtime: Runtime) -> None:
    bystander = client.create()
    bomb = client.create(memory="128M")
    try:
        with runtime.subscribe(("workspace",)) as events:
            client.ping()
            try:
                result = client.exec(bomb.id, ["python3", "-c", MEMORY_BOMB], timeout_s=60)
            except Conflict as exc:  # under runsc the OOM killer may take the whole sandbox, the command with it
                assert "ran out of memory" in exc.message, exc.message
            else:
                assert result.exit_code != 0 and not result.timed_out
            # The runtime notices: a recorded OOM kill, or the workspace failed for lack of memory.
            wait_for_event(
                events,
                lambda e: (
                    e.get("workspace_id") == bomb.id and ("oom" in str(e.get("reason")) or (e.get("state") == "failed"))
                ),
            )
        after = client.get(bomb.id)
        if after.state == "ready":
            assert after.oom_kills >= 1
            try:
                assert client.exec(bomb.id, ["true"]).exit_code == 0  # the workspace lives on...
            except Conflict:  # ... unless, under runsc, the sandbox itself died of the OOM a moment later
                after = client.get(bomb.id)
        if after.state != "ready":
            assert after.state == "failed" and "out of memory" in (after.error or ""), after
        assert client.exec(bystander.id, ["echo", "fine"]).stdout == b"fine\n"
        assert client.get(bystander.id).oom_kills == 0
    finally:
        for record in (bomb, bystander):
            client.destroy(record.id)


def test_a_fork_bomb_is_contained_and_other_workspaces_carry_on(client: Client, runtime: Runtime) -> None:
    bystander = client.create()
    # Under runc the pids limit is the one under test: with 256M a thousand shells could also
    # reach the memory limit and the OOM killer take the agent (seen about once in ten runs).
    bomb = client.create(memory="1G" if bystander.runtime == "runc" else "256M")
    # Through the workspace agent, as most commands run (its channel must not outlive the sandbox).
    poll_until(lambda: client.exec(bomb.id, "true").via == "agent", timeout_s=60)
    with runtime.subscribe(("workspace",)) as events:
        client.ping()
        try:
            result = client.exec(bomb.id, ["bash", "-c", FORK_BOMB], timeout_s=10)
        except Conflict as exc:
            result = None
            reasons = ("ended with its workspace", "failed while", "agent stopped while the command ran")
            assert any(reason in exc.message for reason in reasons), exc.message
        if bomb.runtime == "runc":
            # The pids limit held the bomb until the timeout killed its whole process group.
            assert result is not None and result.timed_out
            survivors = client.exec(bomb.id, "ps -eo comm= | grep -c '^bash$' || true", timeout_s=30)
            assert survivors.stdout.strip() == b"0"
        else:
            # Under gVisor every task costs the Sentry memory: the sandbox goes down at its
            # memory limit and the runtime records why.
            if client.get(bomb.id).state != "failed":
                wait_for_event(events, workspace_event(bomb.id, state="failed"))
            assert "out of memory" in (client.get(bomb.id).error or "")
    assert client.exec(bystander.id, ["echo", "fine"]).stdout == b"fine\n"
    for record in (bomb, bystander):
        client.destroy(record.id)


def test_the_cpu_quota_holds(client: Client) -> None:
    record = client.create(cpu=0.5)
    try:
        share = float(client.exec(record.id, ["python3", "-c", BUSY_LOOP]).stdout)
        # A busy loop gets a whole core without a quota; with 0.5 it must not get more
        # than half (plus scheduling slack). A busy machine only lowers the share.
        assert share <= 0.7
    finally:
        client.destroy(record.id)


def test_disk_use_is_measured_and_over_budget_raises_an_alert(client: Client, runtime: Runtime) -> None:
    record = client.create(disk="2M")
    with runtime.subscribe(("alert",)) as events:
        client.ping()
        client.exec(record.id, "head -c 5000000 /dev/urandom > /workspace/big && sync")
        alert = wait_for_event(events, workspace_event(record.id, type="alert.raised"))
    assert alert["key"] == f"disk:{record.id}"
    # measured while the file grew: over the budget, at most what was written (plus metadata)
    assert (2 << 20) <= alert["value"] <= 5_000_000 + (1 << 20)
    assert alert["limit"] == 2 << 20
    measured = client.get(record.id).disk_used_bytes
    assert measured is not None and measured >= 2 << 20
    assert client.stats()["usage"][record.id]["disk_used_bytes"] >= 2 << 20
    with runtime.subscribe(("alert",)) as events:
        client.ping()
        client.exec(record.id, ["rm", "/workspace/big"])
        wait_for_event(events, workspace_event(record.id, type="alert.cleared"))
    client.destroy(record.id)
