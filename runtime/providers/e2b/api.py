"""The E2B control plane as the adapter uses it: one class over the SDK's ``Sandbox`` API.

Everything the provider asks of E2B's REST API goes through ``E2BApi``: create, connect,
kill, set a timeout, list by metadata (following the SDK's paginator). The sandboxes it
returns are the SDK's own ``Sandbox`` objects, whose ``commands`` and ``files`` reach the
sandbox's ``envd``; ``adopt`` is the one place a sandbox object enters the adapter (tests
subclass ``E2BApi`` there to put a stand-in behind those two, see ``tests/e2b_standin``).
Every call is translated (``errors.translated``) and bounded by ``request_timeout_s``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from e2b import Sandbox, SandboxInfo, SandboxQuery

from runtime.errors import BadRequest, ProviderUnavailable
from runtime.providers.e2b.errors import translated

__all__ = ["E2BApi", "E2BParams"]

_PAGE = 100


@dataclass(frozen=True)
class E2BParams:
    """How to reach E2B (the SDK's ``ApiParams``).

    Attributes:
        api_key: The team's API key (``E2B_API_KEY``).
        domain: E2B's domain (``E2B_DOMAIN``): the API is ``https://api.<domain>``.
        api_url: Another E2B-compatible API's URL (``E2B_API_URL``), or ``None``.
        request_timeout_s: The longest one control-plane call may take.
    """

    api_key: str
    domain: str = "e2b.app"
    api_url: str | None = None
    request_timeout_s: float = 30.0

    @property
    def where(self) -> str:
        """The API's URL, for messages."""
        return self.api_url or f"https://api.{self.domain}"

    def sdk(self) -> dict[str, Any]:
        """The SDK's keyword arguments for these parameters."""
        params: dict[str, Any] = {
            "api_key": self.api_key,
            "domain": self.domain,
            "request_timeout": self.request_timeout_s,
            "debug": False,  # never the SDK's E2B_DEBUG localhost mode from the environment
        }
        if self.api_url:
            params["api_url"] = self.api_url
        return params


class E2BApi:
    """E2B's REST API through the SDK (blocking, thread-safe: one HTTP client per call).

    Args:
        params: How to reach E2B.
    """

    def __init__(self, params: E2BParams) -> None:
        self.params = params

    def adopt(self, sandbox: Sandbox) -> Sandbox:
        """The sandbox object the adapter will use (the SDK's own, here)."""
        return sandbox

    def create(
        self,
        *,
        template: str,
        timeout_s: int,
        metadata: Mapping[str, str],
        envs: Mapping[str, str],
        idempotency_key: str,
    ) -> Sandbox:
        """A new sandbox from ``template``; paused (not killed) when its timeout passes."""
        try:
            sandbox = self._create(template, timeout_s, metadata, envs, idempotency_key)
        except ProviderUnavailable as exc:
            if getattr(exc.__cause__, "status_code", None) == 404:  # E2B words an unknown template so
                raise BadRequest(f"E2B has no template {template!r}: name one your team has built") from None
            raise
        return self.adopt(sandbox)

    def _create(
        self, template: str, timeout_s: int, metadata: Mapping[str, str], envs: Mapping[str, str], key: str
    ) -> Sandbox:
        with translated(f"creating a sandbox from template {template!r}"):
            return Sandbox.create(
                template=template,
                timeout=timeout_s,
                metadata=dict(metadata),
                envs=dict(envs),
                # A runtime that is down when the timeout passes loses nothing: E2B pauses
                # the sandbox and the next connect resumes it; the reaper kills at expiry.
                lifecycle={"on_timeout": "pause", "auto_resume": True},
                idempotency_key=key,
                **self.params.sdk(),
            )

    def connect(self, sandbox_id: str) -> Sandbox:
        """The running sandbox ``sandbox_id`` (a paused one is resumed)."""
        with translated(f"connecting to sandbox {sandbox_id}"):
            sandbox = Sandbox.connect(sandbox_id, **self.params.sdk())
        return self.adopt(sandbox)

    def kill(self, sandbox_id: str) -> bool:
        """Kill ``sandbox_id``; ``False`` if E2B did not know it."""
        with translated(f"killing sandbox {sandbox_id}"):
            return bool(Sandbox.kill(sandbox_id=sandbox_id, **self.params.sdk()))

    def set_timeout(self, sandbox_id: str, timeout_s: int) -> None:
        """End (pause) ``sandbox_id`` ``timeout_s`` seconds from now unless renewed."""
        with translated(f"setting the timeout of sandbox {sandbox_id}"):
            Sandbox.set_timeout(sandbox_id=sandbox_id, timeout=timeout_s, **self.params.sdk())

    def list(self, metadata: Mapping[str, str], *, limit: int | None = None) -> Iterator[SandboxInfo]:
        """Every running or paused sandbox whose metadata has all of ``metadata`` (all pages).

        With ``limit``, one page of at most that many (the health check's cheap call).
        """
        with translated("listing sandboxes"):
            query = SandboxQuery(metadata=dict(metadata))
            pages = Sandbox.list(query=query, limit=limit or _PAGE, **self.params.sdk())
            while pages.has_next:
                yield from pages.next_items()
                if limit is not None:
                    return
