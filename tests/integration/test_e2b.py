"""The e2b provider in a running runtime: health, failover, failures, pool, reaper.

The control plane is the real SDK against the E2B stand-in's REST API; each sandbox's
commands and files are the stand-in's (``tests.e2b_serve.StandInApi``). The shared
scenario (create ... kill -9 ... destroy) is in ``test_provider_scenario``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2b import Sandbox

from runtime.app import Runtime
from runtime.config import Settings
from runtime.errors import BadRequest, Conflict, ProviderUnavailable
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED
from tests.conftest import MakeDockerRuntime, leftover_containers
from tests.e2b_serve import e2b_provider, sandbox_ids
from tests.e2b_standin import ControlPlane
from tests.helpers import poll_until

pytestmark = pytest.mark.docker

E2BRuntime = Callable[..., Runtime]


@pytest.fixture
def plane(docker_client: Any, make_settings: Callable[..., Settings]) -> Iterator[ControlPlane]:
    with ControlPlane(image=make_settings().default_image) as standin:
        yield standin


@pytest.fixture
def e2b_runtime(make_docker_runtime: MakeDockerRuntime, plane: ControlPlane) -> E2BRuntime:
    """Runtimes with gvisor and e2b (on the stand-in); settings as keyword arguments."""

    def make(**changes: Any) -> Runtime:
        values: dict[str, Any] = {
            "e2b_api_key": plane.api_key,
            "e2b_api_url": plane.url,
            "default_provider": "e2b",
            "health_interval_s": 0.5,
        }
        return make_docker_runtime(more_providers=lambda s, i: {"e2b": e2b_provider(s, i)}, **values | changes)

    return make


def provider_status(runtime: Runtime, name: str) -> Any:
    with runtime.client() as client:
        return next(status for status in client.providers() if status.name == name)


def test_a_create_on_e2b_carries_the_workspace_in_the_sandbox_metadata(e2b_runtime: E2BRuntime) -> None:
    runtime = e2b_runtime()
    with runtime.client() as client:
        record = client.create(labels={"task": "t-7"}, env={"GREETING": "hi"})
        assert (record.provider, record.runtime, record.image) == ("e2b", "e2b", "base")
        assert client.exec(record.id, ["sh", "-c", "echo $GREETING"]).stdout == b"hi\n"
        (info,) = Sandbox.list(api_key=runtime.settings.e2b_api_key, api_url=runtime.settings.e2b_api_url).next_items()
        assert info.metadata[LABEL_ID] == record.id
        assert info.metadata[LABEL_INSTANCE] == runtime.instance_id
        assert info.metadata["task"] == "t-7"
        client.destroy(record.id)


def test_when_e2b_is_down_creates_fall_back_to_gvisor(e2b_runtime: E2BRuntime, plane: ControlPlane) -> None:
    plane.set_available(False)
    runtime = e2b_runtime(fallback_providers=("gvisor",))
    status = provider_status(runtime, "e2b")
    assert not status.healthy and "does not answer" in status.detail
    with runtime.client() as client:
        record = client.create()
        assert (record.provider, record.fallback_from) == ("gvisor", "e2b")
        client.destroy(record.id)
    plane.set_available(True)
    poll_until(lambda: provider_status(runtime, "e2b").healthy)
    with runtime.client() as client:
        record = client.create()
        assert (record.provider, record.fallback_from) == ("e2b", None)
        client.destroy(record.id)


def test_a_rejected_key_makes_the_provider_unhealthy_saying_so(e2b_runtime: E2BRuntime) -> None:
    runtime = e2b_runtime(e2b_api_key="e2b_not-the-key")
    status = provider_status(runtime, "e2b")
    assert not status.healthy and "E2B rejected the API key" in status.detail
    with runtime.client() as client, pytest.raises(ProviderUnavailable, match="rejected the API key"):
        client.create()


def test_a_rate_limited_create_is_a_retryable_provider_unavailable(
    e2b_runtime: E2BRuntime, plane: ControlPlane
) -> None:
    runtime = e2b_runtime()
    plane.fail_next(429, times=4, path_prefix="/v2/sandboxes", method="POST")  # more than the SDK retries by itself
    with runtime.client() as client:
        with pytest.raises(ProviderUnavailable) as caught:
            client.request("create", {})
        assert caught.value.retryable and "E2B is busy" in caught.value.message
        record = client.create()  # the next one goes through
        client.destroy(record.id)


def test_a_sandbox_killed_behind_the_runtimes_back_fails_its_workspace_with_the_reason(
    e2b_runtime: E2BRuntime, plane: ControlPlane
) -> None:
    runtime = e2b_runtime(health_interval_s=3600.0)  # the call finds it, not the health check
    with runtime.client() as client:
        record = client.create()
        (sandbox_id,) = sandbox_ids(plane)
        Sandbox.kill(sandbox_id=sandbox_id, api_key=plane.api_key, api_url=plane.url)
        with pytest.raises(Conflict, match="sandbox is gone"):
            client.exec(record.id, ["true"])
        poll_until(lambda: client.get(record.id).state == "failed")
        assert "sandbox is gone" in (client.get(record.id).error or "")


def test_the_reaper_kills_the_sandbox_of_an_expired_workspace_and_orphans_of_this_runtime(
    e2b_runtime: E2BRuntime, plane: ControlPlane
) -> None:
    runtime = e2b_runtime(cleanup_interval_min=0.01)
    orphan = Sandbox.create(
        metadata={LABEL_MANAGED: "true", LABEL_INSTANCE: runtime.instance_id, LABEL_ID: "ws_000000000000"},
        api_key=plane.api_key,
        api_url=plane.url,
    )
    with runtime.client() as client:
        record = client.create(ttl_seconds=1)
        poll_until(lambda: client.get(record.id).state == "destroyed")
    poll_until(lambda: sandbox_ids(plane) == [])
    assert orphan.sandbox_id not in sandbox_ids(plane)


def test_a_warm_pool_on_e2b_serves_a_create_from_a_booted_sandbox(
    e2b_runtime: E2BRuntime, plane: ControlPlane, docker_client: Any
) -> None:
    runtime = e2b_runtime(warm_pool_size=1)
    with runtime.client() as client:
        poll_until(lambda: client.stats()["pool"]["size"] == 1)  # on the default provider only
        record = client.create(env={"N": "7"})
        assert record.from_pool and record.provider == "e2b"
        assert client.exec(record.id, "echo warm $N").stdout == b"warm 7\n"  # create-time env applies
        client.destroy(record.id)
        poll_until(lambda: client.stats()["pool"]["size"] == 1)  # refilled
    # Members outlive a stop; a restart without a pool removes them, sandboxes included.
    runtime.stop()
    assert len(sandbox_ids(plane)) == 1
    without_pool = e2b_runtime(warm_pool_size=0)
    assert without_pool.instance_id == runtime.instance_id
    poll_until(lambda: sandbox_ids(plane) == [] and not leftover_containers(docker_client, runtime.instance_id))


def test_signals_reach_a_streamed_process_and_its_exit_says_which(e2b_runtime: E2BRuntime) -> None:
    runtime = e2b_runtime()
    with runtime.client() as client:
        record = client.create()
        for signal, code in (("TERM", 143), ("KILL", 137)):
            process = client.spawn(record.id, ["sleep", "60"])
            client.exec_kill(record.id, process.process_id, signal)
            poll_until(lambda p=process: client.exec_output(record.id, p.process_id).exit is not None)
            exited = client.exec_output(record.id, process.process_id).exit
            assert exited is not None and exited.exit_code == code, signal
        client.destroy(record.id)


def test_a_create_from_a_template_e2b_does_not_have_is_a_bad_request(e2b_runtime: E2BRuntime) -> None:
    runtime = e2b_runtime()
    with runtime.client() as client:
        with pytest.raises(BadRequest, match="E2B has no template 'no-such-template'"):
            client.create(image="no-such-template")
        assert [record.state for record in client.list(state="failed")] == ["failed"]


def test_a_sandbox_paused_by_its_timeout_while_the_runtime_was_down_resumes_at_the_next_use(
    e2b_runtime: E2BRuntime, plane: ControlPlane
) -> None:
    runtime = e2b_runtime()
    with runtime.client() as client:
        record = client.create()
        client.write_file(record.id, "kept.txt", b"still here")
    runtime.stop()
    (sandbox_id,) = sandbox_ids(plane)
    Sandbox.set_timeout(sandbox_id=sandbox_id, timeout=1, **plane.api_params())  # E2B's clock runs out
    poll_until(lambda: plane.sandbox_state(sandbox_id) == "paused")
    again = e2b_runtime()
    with again.client() as client:
        assert client.get(record.id).state == "ready"  # a paused sandbox is not a lost workspace
        assert client.read_file(record.id, "kept.txt") == b"still here"
        assert plane.sandbox_state(sandbox_id) == "running"
        client.destroy(record.id)


def test_the_inventory_follows_the_listing_across_pages(
    docker_client: Any, make_settings: Callable[..., Settings]
) -> None:
    with ControlPlane(max_page_size=2) as small_pages:
        instance = "inventorytest"
        made = [
            Sandbox.create(
                metadata={LABEL_MANAGED: "true", LABEL_INSTANCE: instance, LABEL_ID: f"ws_00000000000{n}"},
                **small_pages.api_params(),
            ).sandbox_id
            for n in range(5)
        ]
        Sandbox.create(metadata={LABEL_MANAGED: "true", LABEL_INSTANCE: "another"}, **small_pages.api_params())
        settings = make_settings(e2b_api_key=small_pages.api_key, e2b_api_url=small_pages.url)
        found = e2b_provider(settings, instance).inventory()
        assert sorted(state.handle for state in found.values()) == sorted(made)
        assert sorted(found) == [f"ws_00000000000{n}" for n in range(5)]
        pages = [r for r in small_pages.requests if r.method == "GET" and r.path == "/v2/sandboxes"]
        assert len(pages) == 3
