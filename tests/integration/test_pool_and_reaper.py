"""The warm pool and the reaper on the real Docker daemon."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED
from tests.conftest import MakeDockerRuntime, leftover_containers
from tests.helpers import poll_until, wait_for_event, workspace_event

pytestmark = pytest.mark.docker


def test_a_pool_of_three_serves_three_creates_and_refills(
    make_docker_runtime: MakeDockerRuntime, docker_client: Any
) -> None:
    runtime = make_docker_runtime(warm_pool_size=3)
    with runtime.client(timeout_s=120) as client:
        poll_until(lambda: client.stats()["pool"]["size"] == 3)
        claimed = [client.create(labels={"n": str(n)}, env={"N": str(n)}) for n in range(3)]
        assert all(record.from_pool for record in claimed)
        assert [record.labels for record in claimed] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
        assert client.exec(claimed[1].id, "echo $N").stdout == b"1\n"  # create-time env applies
        assert sorted(r.id for r in client.list()) == sorted(r.id for r in claimed)
        poll_until(lambda: client.stats()["pool"]["size"] == 3)  # refilled behind the claims
        stats = client.stats()["pool"]
        assert (stats["claims"], stats["refill_failures"]) == (3, 0)
        cold = client.create(memory="128M")  # another shape: served cold
        assert not cold.from_pool
        assert docker_client.containers.get(f"aw-{cold.id}").attrs["HostConfig"]["Memory"] == 128 << 20
        for record in [*claimed, cold]:
            client.destroy(record.id)
    # Members outlive a stop (warm for the next start); a restart without a pool cleans them.
    runtime.stop()
    assert len(leftover_containers(docker_client, runtime.instance_id)) == 3
    without_pool = make_docker_runtime(warm_pool_size=0)
    assert without_pool.instance_id == runtime.instance_id
    poll_until(lambda: not leftover_containers(docker_client, runtime.instance_id))


def test_an_expired_workspace_is_destroyed_by_the_next_sweep(make_docker_runtime: MakeDockerRuntime) -> None:
    runtime = make_docker_runtime(cleanup_interval_min=0.05)  # a sweep every 3 s
    with runtime.client(timeout_s=120) as client, runtime.subscribe(("workspace",)) as events:
        short = client.create(ttl_seconds=1)
        keeper = client.create()
        event = wait_for_event(events, workspace_event(short.id, state="stopping"), timeout_s=30)
        assert str(event["reason"]).startswith("expired at")
        wait_for_event(events, workspace_event(short.id, state="destroyed"), timeout_s=30)
        assert client.get(keeper.id).state == "ready"
        assert client.stats()["reaper"]["reaped"] == 1
        client.destroy(keeper.id)


def test_an_orphan_with_the_labels_is_removed_and_an_unlabelled_neighbour_survives(
    make_docker_runtime: MakeDockerRuntime, docker_client: Any
) -> None:
    runtime = make_docker_runtime(cleanup_interval_min=0.05)
    labels = {LABEL_MANAGED: "true", LABEL_ID: "ws_0rphan0000ab", LABEL_INSTANCE: runtime.instance_id}
    image = "agent-workspaces/base:bookworm"
    orphan = docker_client.containers.run(
        image, ["sleep", "infinity"], name="aw-ws_0rphan0000ab", labels=labels, detach=True
    )
    neighbour = docker_client.containers.run(image, ["sleep", "infinity"], name="awtest-neighbour", detach=True)
    try:
        with runtime.client() as client:
            poll_until(lambda: client.stats()["reaper"]["orphans"] >= 1, timeout_s=60)
        assert not docker_client.containers.list(all=True, filters={"id": orphan.id})
        neighbour.reload()
        assert neighbour.status == "running"
    finally:
        neighbour.remove(force=True)
        for leftover in docker_client.containers.list(all=True, filters={"id": orphan.id}):
            leftover.remove(force=True)
