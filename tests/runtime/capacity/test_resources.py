"""Resolving a create request: defaults from the settings, sizes, and clear refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runtime.capacity.resources import MIN_MEMORY_BYTES, new_workspace_id, resolve_create
from runtime.config import Settings
from runtime.errors import BadRequest
from runtime.messages import CreateArgs, StoredWorkspace, WorkspaceRecord, WorkspaceSpec
from tests.conftest import MakeSettings

NOW = 1_700_000_000.0


def resolve(settings: Settings, **args: Any) -> StoredWorkspace:
    return resolve_create(
        settings, CreateArgs(**args), workspace_id="ws_0123456789ab", provider="gvisor", runtime="runsc", now=NOW
    )


def test_an_empty_create_takes_every_default_and_starts_in_creating(make_settings: MakeSettings) -> None:
    settings = make_settings(default_ttl_days=2.0)
    resources: dict[str, Any] = {
        "image": settings.default_image,
        "cpu": 1.0,
        "memory_bytes": 256 << 20,
        "disk_bytes": 1 << 30,
    }
    assert resolve(settings) == StoredWorkspace(
        record=WorkspaceRecord(
            id="ws_0123456789ab",
            state="creating",
            provider="gvisor",
            runtime="runsc",
            labels={},
            persistent=False,
            created_at=NOW,
            expires_at=NOW + 2 * 86400,
            **resources,
        ),
        spec=WorkspaceSpec(workspace_id="ws_0123456789ab", env={}, labels={}, **resources),
    )  # no handle, not pooled, no request key, not from the pool, no fallback, no error


def test_the_default_ttl_follows_default_ttl_days_including_fractions(make_settings: MakeSettings) -> None:
    assert resolve(make_settings(default_ttl_days=0.5)).record.expires_at == NOW + 43200
    assert resolve(make_settings(default_ttl_days=30)).record.expires_at == NOW + 30 * 86400


def test_explicit_values_replace_the_defaults(make_settings: MakeSettings) -> None:
    entry = resolve(make_settings(), image="python:3.12-slim", cpu=0.5, memory="512M", disk="2G", ttl_seconds=90)
    expected = ("python:3.12-slim", 0.5, 512 << 20, 2 << 30)
    for resolved in (entry.record, entry.spec):
        assert (resolved.image, resolved.cpu, resolved.memory_bytes, resolved.disk_bytes) == expected
    assert entry.record.expires_at == NOW + 90


def test_an_integer_cpu_count_is_stored_as_a_float(make_settings: MakeSettings) -> None:
    record = resolve(make_settings(), cpu=3).record
    assert record.cpu == 3.0 and isinstance(record.cpu, float)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("1G", 1 << 30),
        ("1.5g", int(1.5 * (1 << 30))),
        ("4GiB", 4 << 30),
        (" 64 MB ", 64 << 20),
        (str(8 << 20), 8 << 20),
        (8 << 20, 8 << 20),
        (MIN_MEMORY_BYTES, MIN_MEMORY_BYTES),
        ("6M", MIN_MEMORY_BYTES),
    ],
)
def test_sizes_are_read_as_strings_with_binary_units_or_byte_counts(
    make_settings: MakeSettings, value: int | str, expected: int
) -> None:
    entry = resolve(make_settings(), memory=value, disk=value)
    assert (entry.record.memory_bytes, entry.record.disk_bytes) == (expected, expected)
    assert (entry.spec.memory_bytes, entry.spec.disk_bytes) == (expected, expected)


@pytest.mark.parametrize("value", ["5M", 1024, MIN_MEMORY_BYTES - 1, "0.001G"])
def test_memory_below_the_minimum_is_refused_naming_the_value(make_settings: MakeSettings, value: int | str) -> None:
    with pytest.raises(BadRequest) as refused:
        resolve(make_settings(), memory=value)
    assert refused.value.message == f"memory={value!r} is below the minimum of 6M"
    assert refused.value.code == "bad_request" and not refused.value.retryable


def test_a_small_disk_is_accepted_there_is_no_minimum_for_disk(make_settings: MakeSettings) -> None:
    assert resolve(make_settings(), disk=1).record.disk_bytes == 1


@pytest.mark.parametrize("field", ["memory", "disk"])
@pytest.mark.parametrize("value", ["lots", "4X", "-1G", "0", 0, -5, "", "1 G B"])
def test_a_malformed_size_is_refused_with_examples_of_good_ones(
    make_settings: MakeSettings, field: str, value: int | str
) -> None:
    with pytest.raises(BadRequest) as refused:
        resolve(make_settings(), **{field: value})
    assert refused.value.message == (f"{field}={value!r} is not a size: expected e.g. 4G, 512M or a number of bytes")


def test_memory_is_judged_before_disk_and_before_persistence(make_settings: MakeSettings) -> None:
    with pytest.raises(BadRequest, match=r"^memory='bad' is not a size"):
        resolve(make_settings(), memory="bad", disk="bad", persistent=True, ttl_seconds=60)
    with pytest.raises(BadRequest, match=r"^disk='bad' is not a size"):
        resolve(make_settings(), disk="bad", persistent=True, ttl_seconds=60)


def test_a_persistent_workspace_with_a_ttl_is_refused(make_settings: MakeSettings) -> None:
    with pytest.raises(BadRequest) as refused:
        resolve(make_settings(), persistent=True, ttl_seconds=3600)
    assert refused.value.message == "persistent workspaces never expire: drop ttl_seconds or persistent"


def test_a_persistent_workspace_never_expires(make_settings: MakeSettings) -> None:
    record = resolve(make_settings(default_ttl_days=1), persistent=True).record
    assert record.persistent is True
    assert record.expires_at is None
    assert record.created_at == NOW


def test_the_spec_carries_env_and_labels_and_the_record_only_labels(make_settings: MakeSettings) -> None:
    env = {"TOKEN": "secret", "MODE": "fast"}
    labels = {"task": "7", "team": "infra"}
    entry = resolve(make_settings(), env=env, labels=labels)
    assert entry.spec.env == env
    assert entry.spec.labels == labels
    assert entry.record.labels == labels
    assert "secret" not in repr(entry.record)  # env stays private to the spec
    env["TOKEN"], labels["task"] = "changed", "changed"  # the entry holds its own copies
    assert entry.spec.env["TOKEN"] == "secret"
    assert entry.record.labels["task"] == entry.spec.labels["task"] == "7"


def test_the_fallback_and_the_request_key_are_carried_into_the_entry(make_settings: MakeSettings) -> None:
    entry = resolve_create(
        make_settings(),
        CreateArgs(),
        workspace_id="ws_0123456789ab",
        provider="firecracker",
        runtime="firecracker",
        now=NOW,
        fallback_from="gvisor",
        request="client-1:req-7",
    )
    assert (entry.record.provider, entry.record.fallback_from, entry.request) == (
        "firecracker",
        "gvisor",
        "client-1:req-7",
    )


def test_new_workspace_ids_are_ws_and_twelve_hex_digits_and_do_not_repeat() -> None:
    ids = [new_workspace_id() for _ in range(500)]
    assert all(re.fullmatch(r"ws_[0-9a-f]{12}", workspace_id) for workspace_id in ids)
    assert len(set(ids)) == len(ids)
