"""Provider health as clients see it: events on change, fallback providers."""

from __future__ import annotations

import pytest

from runtime.app import Runtime
from runtime.errors import ProviderUnavailable, Timeout
from tests.conftest import MakeSettings
from tests.fakes import FakeProvider
from tests.helpers import poll_until, wait_for_event


def test_a_create_goes_to_a_healthy_fallback_when_the_default_is_unhealthy(make_settings: MakeSettings) -> None:
    default, fallback = FakeProvider(healthy=False), FakeProvider(name="e2b")
    settings = make_settings(fallback_providers=("e2b",), health_interval_s=0.05)
    with Runtime(settings, providers={"gvisor": default, "e2b": fallback}) as runtime, runtime.client() as client:
        record = client.create()
        assert (record.provider, record.fallback_from) == ("e2b", "gvisor")
        assert client.get(record.id).fallback_from == "gvisor"
        with pytest.raises(ProviderUnavailable):  # asked for by name: no fallback
            client.create(provider="gvisor")
        default.healthy = True
        poll_until(lambda: all(status.healthy for status in client.providers()))
        back = client.create()
        assert (back.provider, back.fallback_from) == ("gvisor", None)


def test_without_a_configured_fallback_an_unhealthy_default_refuses_creates(make_settings: MakeSettings) -> None:
    providers = {"gvisor": FakeProvider(healthy=False), "e2b": FakeProvider(name="e2b")}
    with Runtime(make_settings(), providers=providers) as runtime, runtime.client() as client:
        with pytest.raises(ProviderUnavailable) as refused:
            client.create()
        assert refused.value.retryable and "fake provider switched off" in refused.value.message


def test_health_changes_are_published_once_per_change(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    with (
        Runtime(make_settings(health_interval_s=0.05), providers={"gvisor": provider}) as runtime,
        runtime.subscribe(("provider",)) as events,
    ):
        provider.healthy = False  # (the event of the first check may or may not arrive before)
        down = wait_for_event(events, lambda event: event["type"] == "provider.health" and not event["healthy"])
        assert down["provider"] == "gvisor"
        assert down["detail"] == "fake provider switched off"
        provider.healthy = True
        up = wait_for_event(events, lambda event: event["type"] == "provider.health")  # the very next one
        assert up["healthy"] is True and up["seq"] > down["seq"]
        with pytest.raises(Timeout):  # checks go on every 0.05 s, but nothing changes
            events.recv(0.3)


def test_each_check_hands_the_ready_workspaces_expiries_to_the_provider_and_an_extend_asks_for_one_at_once(
    make_settings: MakeSettings,
) -> None:
    provider = FakeProvider()
    settings = make_settings(health_interval_s=3600.0)  # only the extend can cause the check seen here
    with Runtime(settings, providers={"gvisor": provider}) as runtime, runtime.client() as client:
        record = client.create(ttl_seconds=60)
        persistent = client.create(persistent=True)
        extended = client.extend(record.id, 7200)
        handle = f"fake-{record.id}"  # FakeProvider's handles

        def renewal() -> dict[str, float | None] | None:
            return next((r for r in provider.renewals if r.get(handle) == extended.expires_at), None)

        poll_until(lambda: renewal() is not None)
        assert renewal() == {handle: extended.expires_at, f"fake-{persistent.id}": None}
