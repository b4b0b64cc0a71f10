"""The e2b adapter's own logic, without E2B: error translation, health without a key, timeouts.

The SDK's exceptions are the real classes; the control plane is an ``E2BApi`` whose
calls are recorded (the stand-in tests drive the real SDK over HTTP).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from e2b import (
    AuthenticationException,
    CommandExitException,
    FileNotFoundException,
    InvalidArgumentException,
    NotEnoughSpaceException,
    RateLimitException,
    SandboxException,
    SandboxNotFoundException,
    ServiceBusyException,
    TemplateException,
    TimeoutException,
)
from e2b.exceptions import SandboxNotRunningException

from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, Timeout, WorkspaceError
from runtime.providers.base import LABEL_ID, LABEL_INSTANCE, LABEL_MANAGED
from runtime.providers.e2b import E2BApi, E2BParams, E2BProvider
from runtime.providers.e2b.commands import _Capture, _exit_code
from runtime.providers.e2b.errors import sandbox_gone, sandbox_stopped, translated


class RecordingApi(E2BApi):
    """A control plane that answers from memory and records what it was asked."""

    def __init__(self, listing: list[Any] | None = None, fail: Exception | None = None, key: str = "e2b_test") -> None:
        super().__init__(E2BParams(api_key=key, api_url="http://127.0.0.1:9"))
        self.listing = listing or []
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def list(self, metadata: Mapping[str, str], *, limit: int | None = None) -> Iterator[Any]:
        self.calls.append(("list", (dict(metadata), limit)))
        if self.fail is not None:
            with translated("listing sandboxes"):
                raise self.fail
        yield from self.listing

    def set_timeout(self, sandbox_id: str, timeout_s: int) -> None:
        self.calls.append(("set_timeout", (sandbox_id, timeout_s)))


def provider(api: RecordingApi, *, max_timeout_s: int = 3600) -> E2BProvider:
    return E2BProvider(instance_id="inst1", api=api, max_timeout_s=max_timeout_s)


@pytest.mark.parametrize(
    ("raised", "family", "retryable", "words"),
    [
        (AuthenticationException("Invalid API key"), ProviderUnavailable, False, "E2B rejected the API key"),
        (RateLimitException("Rate limit exceeded"), ProviderUnavailable, True, "E2B is busy"),
        (ServiceBusyException("no capacity"), ProviderUnavailable, True, "E2B is busy"),
        (SandboxNotFoundException("Sandbox sbx1 not found"), Conflict, False, "sandbox is gone"),
        (SandboxNotRunningException("paused"), ProviderUnavailable, True, "not running"),
        (FileNotFoundException("no such file"), NotFound, False, "no such file"),
        (NotEnoughSpaceException("disk full"), Conflict, False, "no space left"),
        (TimeoutException("request timed out"), Timeout, True, "did not answer in time"),
        (InvalidArgumentException("bad"), BadRequest, False, "E2B refused it"),
        (TemplateException("old template"), BadRequest, False, "E2B refused it"),
        (httpx.ConnectError("connection refused"), ProviderUnavailable, True, "cannot reach the E2B API"),
        (SandboxException("500: oops"), ProviderUnavailable, True, "E2B failed"),
        (Exception("Body of the request is None"), ProviderUnavailable, True, "E2B failed"),
    ],
)
def test_every_sdk_exception_becomes_one_of_the_runtimes_families(
    raised: Exception, family: type[WorkspaceError], retryable: bool, words: str
) -> None:
    with pytest.raises(WorkspaceError) as caught, translated("doing a thing"):
        raise raised
    assert type(caught.value) is family
    assert caught.value.retryable is retryable
    assert words in caught.value.message
    assert "doing a thing" in caught.value.message


def test_a_missing_sandbox_is_told_apart_from_a_missing_file_and_from_a_paused_sandbox() -> None:
    def translate(exc: Exception) -> WorkspaceError:
        try:
            with translated("x"):
                raise exc
        except WorkspaceError as error:
            return error
        raise AssertionError("not raised")

    assert sandbox_gone(translate(SandboxNotFoundException("gone")))
    assert not sandbox_gone(translate(FileNotFoundException("gone")))
    assert not sandbox_gone(translate(SandboxNotRunningException("paused")))
    assert sandbox_stopped(translate(SandboxNotRunningException("paused")))


def test_without_a_key_the_provider_is_unhealthy_and_makes_no_call() -> None:
    api = RecordingApi(key="")
    probe = provider(api).probe()
    assert not probe.healthy
    assert probe.detail.startswith("E2B_API_KEY not set")
    assert api.calls == []
    with pytest.raises(ProviderUnavailable, match="E2B_API_KEY not set"):
        provider(api).create(None)  # type: ignore[arg-type]


def test_with_a_key_one_listing_of_one_sandbox_decides_and_the_detail_says_which() -> None:
    api = RecordingApi()
    probe = provider(api).probe()
    assert probe.healthy and "accepted the key" in probe.detail
    assert api.calls == [("list", ({LABEL_MANAGED: "true", LABEL_INSTANCE: "inst1"}, 1))]
    rejected = provider(RecordingApi(fail=AuthenticationException("Invalid API key"))).probe()
    assert not rejected.healthy and "E2B rejected the API key" in rejected.detail
    down = provider(RecordingApi(fail=httpx.ConnectError("refused"))).probe()
    assert not down.healthy and "does not answer" in down.detail


def sandbox(sandbox_id: str, workspace_id: str | None, state: str = "running", ends_in_s: float = 600) -> Any:
    metadata = {LABEL_MANAGED: "true", LABEL_INSTANCE: "inst1"}
    if workspace_id:
        metadata[LABEL_ID] = workspace_id
    end_at = datetime.now(UTC) + timedelta(seconds=ends_in_s)
    return SimpleNamespace(sandbox_id=sandbox_id, metadata=metadata, state=SimpleNamespace(value=state), end_at=end_at)


def test_the_inventory_counts_paused_sandboxes_as_present_and_skips_unlabelled_ones() -> None:
    api = RecordingApi([sandbox("sbx1", "ws_1"), sandbox("sbx2", "ws_2", state="paused"), sandbox("sbx3", None)])
    found = provider(api).inventory()
    assert set(found) == {"ws_1", "ws_2"}
    assert found["ws_1"].handle == "sbx1" and found["ws_1"].running and found["ws_1"].detail == ""
    assert found["ws_2"].running and found["ws_2"].detail == "sandbox is paused"


def test_a_sandbox_timeout_follows_a_near_expiry_and_is_left_alone_when_already_there() -> None:
    api = RecordingApi([sandbox("sbx1", "ws_1", ends_in_s=3000)])
    e2b = provider(api)
    e2b.inventory()  # learns the sandbox ends in 3000 s
    e2b.renew({"sbx1": time.time() + 120})
    ((handle, timeout_s),) = [args for name, args in api.calls if name == "set_timeout"]
    assert handle == "sbx1" and 119 <= timeout_s <= 121
    e2b.renew({"sbx1": time.time() + 120})  # already in step: no second call
    assert len([c for c in api.calls if c[0] == "set_timeout"]) == 1


def test_long_lived_and_persistent_sandboxes_are_renewed_only_once_half_of_the_maximum_is_left() -> None:
    api = RecordingApi([sandbox("fresh", "ws_1", ends_in_s=3000), sandbox("old", "ws_2", ends_in_s=1000)])
    e2b = provider(api, max_timeout_s=3600)
    e2b.inventory()
    e2b.renew({"fresh": None, "old": time.time() + 30 * 86400})
    renewed = [args for name, args in api.calls if name == "set_timeout"]
    assert renewed == [("old", 3600)]


def test_exec_output_beyond_the_limit_is_dropped_and_the_result_says_how_much() -> None:
    capture = _Capture(limit=5)
    capture.add("abc")
    capture.add("défg")  # 5 bytes in UTF-8: 2 kept, 3 dropped
    assert capture.result() == b"abcd\xc3\n[output truncated: 3 bytes omitted]\n"
    whole = _Capture(limit=5)
    whole.add("abcde")
    assert whole.result() == b"abcde"


@pytest.mark.parametrize(
    ("error", "code"), [("signal: killed", 137), ("signal: terminated", 143), ("signal: interrupt", 130), ("", -1)]
)
def test_envds_signal_exits_become_128_plus_the_signal(error: str, code: int) -> None:
    exc = CommandExitException(stderr="", stdout="", exit_code=-1, error=error)
    assert _exit_code(exc) == code
