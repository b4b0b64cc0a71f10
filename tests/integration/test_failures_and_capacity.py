"""Containers that die or vanish behind the runtime's back; capacity under concurrency; runc fallback."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from runtime.errors import CapacityExceeded, Conflict
from tests.conftest import MakeDockerRuntime
from tests.helpers import wait_for_event, workspace_event

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        (lambda container: container.kill(), "exited with code 137"),
        (lambda container: container.remove(force=True), ""),
    ],
    ids=["killed", "removed"],
)
def test_a_container_that_dies_behind_the_runtimes_back_fails_its_workspace_only(
    make_docker_runtime: MakeDockerRuntime, docker_client: Any, action: Any, reason: str
) -> None:
    runtime = make_docker_runtime(max_concurrent=2)
    with runtime.client(timeout_s=120) as client, runtime.subscribe(("workspace",)) as events:
        victim, bystander = client.create(), client.create()
        with pytest.raises(CapacityExceeded):
            client.create()
        action(docker_client.containers.get(f"aw-{victim.id}"))
        wait_for_event(events, workspace_event(victim.id, state="failed"))
        failed = client.get(victim.id)
        assert failed.error and reason in failed.error
        with pytest.raises(Conflict, match="is failed"):
            client.exec(victim.id, ["true"])
        assert client.exec(bystander.id, ["echo", "fine"]).stdout == b"fine\n"
        replacement = client.create()  # the failed workspace's slot was freed
        for record in (victim, bystander, replacement):
            client.destroy(record.id)
        assert client.get(victim.id).state == "destroyed"
    assert not docker_client.volumes.list(filters={"name": f"aw-{victim.id}"})


def test_capacity_holds_under_twenty_concurrent_creates(make_docker_runtime: MakeDockerRuntime) -> None:
    runtime = make_docker_runtime(max_concurrent=3)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        with runtime.client(timeout_s=120) as client:
            try:
                client.create()
                outcome = "ok"
            except CapacityExceeded:
                outcome = "capacity"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with runtime.client(timeout_s=120) as client:
        assert sorted(outcomes) == ["capacity"] * 17 + ["ok"] * 3
        assert len(client.list(state="ready")) == 3
        first = client.list()[0]
        client.destroy(first.id)
        client.create()
        for record in client.list():
            client.destroy(record.id)


def test_without_runsc_workspaces_fall_back_to_runc_and_say_so(
    make_docker_runtime: MakeDockerRuntime, docker_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    runtime = make_docker_runtime(runtimes=("runsc-not-registered", "runc"), health_interval_s=0.2)
    with runtime.client(timeout_s=120) as client:
        [status] = client.providers()
        assert (status.healthy, status.runtime) == (True, "runc")
        assert "Docker has no runsc-not-registered runtime: workspaces run on runc" in status.detail
        record = client.create()
        try:
            assert record.runtime == "runc"
            assert docker_client.containers.get(f"aw-{record.id}").attrs["HostConfig"]["Runtime"] == "runc"
            # runc shares the host's kernel
            assert client.exec(record.id, ["uname", "-r"]).stdout.decode().strip() != "4.4.0"
        finally:
            client.destroy(record.id)
    warnings = [r for r in caplog.records if "falls back" in r.getMessage() or "fall back" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
