"""What the E2B stand-in's control plane knows of each sandbox, and how it answers about them.

Every body is built with the SDK's own generated models (``Sandbox``, ``ListedSandbox``,
``SandboxDetail``) and their ``to_dict()``, so the shapes are exactly those the SDK parses.
The list endpoint follows E2B's API (``packages/api`` of e2b-dev/infra): newest first (or
oldest first with ``order=asc``), a keyset cursor ``base64url("{started_at}__{id}")`` in the
``X-Next-Token`` header while more remain, the ``metadata`` query parsed as E2B parses it
(unescape the whole string, split on ``&`` and ``=``, unescape each key and value) and
matched on every pair.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from e2b.api.client.models import ListedSandbox, Sandbox, SandboxDetail, SandboxLifecycle, SandboxState
from e2b.api.client.models.sandbox_on_timeout import SandboxOnTimeout

__all__ = [
    "CLIENT_ID",
    "ListQuery",
    "SandboxRecord",
    "now",
    "page",
    "parse_list_query",
    "parse_metadata_filter",
    "template_id_for",
]

CLIENT_ID = "6532622b"
"""The client id E2B's API still returns to every caller, for backwards compatibility."""


def template_id_for(name: str) -> str:
    """A stable template id for a template name: E2B answers ids, not the alias asked for."""
    return hashlib.sha1(name.encode()).hexdigest()[:20]


@dataclass
class SandboxRecord:
    """One sandbox the control plane knows (killed sandboxes are forgotten, as E2B forgets them)."""

    sandbox_id: str
    alias: str
    envd_version: str
    envd_access_token: str
    container_id: str
    started_at: datetime
    end_at: datetime
    metadata: dict[str, str]
    auto_pause: bool
    auto_resume: bool
    allow_internet_access: bool | None
    state: SandboxState = SandboxState.RUNNING
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Serialises the Docker operations (pause, resume, kill) on this sandbox's container."""

    @property
    def template_id(self) -> str:
        return template_id_for(self.alias)

    def created(self, domain: str) -> Sandbox:
        """The body of a create or connect answer."""
        return Sandbox(
            template_id=self.template_id,
            sandbox_id=self.sandbox_id,
            client_id=CLIENT_ID,
            envd_version=self.envd_version,
            alias=self.alias,
            envd_access_token=self.envd_access_token,
            domain=domain,
        )

    def listed(self) -> ListedSandbox:
        return ListedSandbox(
            template_id=self.template_id,
            sandbox_id=self.sandbox_id,
            client_id=CLIENT_ID,
            started_at=self.started_at,
            end_at=self.end_at,
            cpu_count=2,
            memory_mb=512,
            disk_size_mb=22 * 1024,
            state=self.state,
            envd_version=self.envd_version,
            alias=self.alias,
            metadata=dict(self.metadata),
        )

    def detail(self, domain: str) -> SandboxDetail:
        return SandboxDetail(
            template_id=self.template_id,
            sandbox_id=self.sandbox_id,
            client_id=CLIENT_ID,
            started_at=self.started_at,
            end_at=self.end_at,
            envd_version=self.envd_version,
            cpu_count=2,
            memory_mb=512,
            disk_size_mb=22 * 1024,
            state=self.state,
            alias=self.alias,
            envd_access_token=self.envd_access_token,
            allow_internet_access=self.allow_internet_access,
            domain=domain,
            metadata=dict(self.metadata),
            lifecycle=SandboxLifecycle(
                auto_resume=self.auto_resume,
                on_timeout=SandboxOnTimeout.PAUSE if self.auto_pause else SandboxOnTimeout.KILL,
            ),
        )


def parse_metadata_filter(raw: str) -> dict[str, str]:
    """The ``metadata`` query as E2B's API reads it; ``ValueError`` for a malformed one."""
    filters = {}
    for pair in unquote_plus(raw).split("&"):
        parts = pair.split("=")
        if len(parts) != 2:
            raise ValueError("invalid key value pair in query")
        filters[unquote_plus(parts[0])] = unquote_plus(parts[1])
    return filters


@dataclass(frozen=True)
class ListQuery:
    """A parsed ``GET /v2/sandboxes`` query."""

    metadata: dict[str, str] | None
    states: frozenset[SandboxState]
    limit: int
    ascending: bool
    cursor: tuple[datetime, str] | None
    template: str | None
    started_after: datetime | None


def _values(query: Mapping[str, list[str]], name: str) -> list[str]:
    # Both forms reach the API: the SDK joins repeated values with commas (style=form, explode=false).
    return [item for value in query.get(name, []) for item in value.split(",") if item]


def parse_list_query(query: Mapping[str, list[str]], default_limit: int, max_limit: int) -> ListQuery:
    """Parse the list query; ``ValueError`` carries the message of E2B's 400 answer."""
    metadata = None
    if "metadata" in query:
        try:
            metadata = parse_metadata_filter(query["metadata"][-1])
        except ValueError:
            raise ValueError("Error parsing metadata") from None
    try:
        states = frozenset(SandboxState(value) for value in _values(query, "state"))
    except ValueError:
        raise ValueError(f"Invalid state: {_values(query, 'state')}") from None
    limit = default_limit
    if "limit" in query:
        try:
            limit = int(query["limit"][-1])
        except ValueError:
            raise ValueError("Invalid limit") from None
        if limit < 1:
            raise ValueError("limit must be at least 1")
    order = (query.get("order") or ["desc"])[-1]
    if order not in ("asc", "desc"):
        raise ValueError(f"Invalid order {order!r}")
    cursor = None
    token = (query.get("nextToken") or [""])[-1]
    if token:
        cursor = _parse_cursor(token, ascending=order == "asc")
    started_after = None
    if "startedAfter" in query:
        try:
            started_after = datetime.fromisoformat(query["startedAfter"][-1])
        except ValueError:
            raise ValueError("Invalid startedAfter") from None
    return ListQuery(
        metadata=metadata,
        states=states or frozenset(SandboxState),
        limit=min(limit, max_limit),
        ascending=order == "asc",
        cursor=cursor,
        template=query["template"][-1] if query.get("template") else None,
        started_after=started_after,
    )


def _cursor(record: SandboxRecord, ascending: bool) -> str:
    text = f"{record.started_at.isoformat()}__{record.sandbox_id}" + ("__asc" if ascending else "")
    return base64.urlsafe_b64encode(text.encode()).decode()


def _parse_cursor(token: str, ascending: bool) -> tuple[datetime, str]:
    try:
        parts = base64.urlsafe_b64decode(token.encode()).decode().split("__")
        if len(parts) != (3 if ascending else 2) or (ascending and parts[2] != "asc"):
            raise ValueError("cursor was issued for a different sort order")
        return datetime.fromisoformat(parts[0]), parts[1]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("Invalid next token") from None


def _sort_key(started_at: datetime, sandbox_id: str, ascending: bool) -> tuple[float, str]:
    # Newest first, ties broken by id ascending (oldest first with order=asc).
    started = started_at.timestamp()
    return (started if ascending else -started, sandbox_id)


def page(records: Iterable[SandboxRecord], query: ListQuery) -> tuple[list[SandboxRecord], str | None]:
    """One page of the sandboxes matching ``query`` and the token of the next page (``None``: last)."""
    matching = [
        record
        for record in records
        if record.state in query.states
        and (query.metadata is None or all(record.metadata.get(k) == v for k, v in query.metadata.items()))
        and (query.template is None or query.template in (record.alias, record.template_id))
        and (query.started_after is None or record.started_at >= query.started_after)
        and (
            query.cursor is None
            or _sort_key(record.started_at, record.sandbox_id, query.ascending)
            > _sort_key(*query.cursor, query.ascending)
        )
    ]
    matching.sort(key=lambda record: _sort_key(record.started_at, record.sandbox_id, query.ascending))
    if len(matching) <= query.limit:
        return matching, None
    return matching[: query.limit], _cursor(matching[query.limit - 1], query.ascending)


def now() -> datetime:
    """The control plane's clock (UTC, as E2B's API answers times)."""
    return datetime.now(UTC)
