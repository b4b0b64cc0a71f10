"""The E2B API endpoints the SDK calls, as the stand-in control plane answers them.

Paths, methods and statuses are the ones the SDK's generated client (``e2b.api.client.api
.sandboxes``) uses and E2B's API (``packages/api`` of e2b-dev/infra) answers: 201 for a
create and for a connect that resumed a paused sandbox, 200 for a connect to a running one
(its timeout only ever extended; 300 s when the request has none), 204 for kill, timeout
and pause, 404 for a sandbox the API does not know, 409 for pausing a paused one. Request
bodies are read with the SDK's models' ``from_dict`` (a body they cannot read is a 400)
and checked for the types E2B's schema requires. A paused sandbox is a paused container; a
killed one is removed.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import docker.errors
from e2b.api.client.models import ConnectSandboxV2, Error, NewSandboxV2, SandboxState, SandboxTimeoutRequest
from e2b.api.client.types import Unset

from tests.e2b_standin.containers import create_sandbox_container
from tests.e2b_standin.records import SandboxRecord, now, page, parse_list_query, template_id_for

__all__ = ["CONNECT_TIMEOUT_S", "Endpoints", "Reply", "error_reply"]

CONNECT_TIMEOUT_S = 300
"""A connect's timeout when the request has none (the default of E2B's ``ConnectSandboxV2`` schema)."""


@dataclass
class Reply:
    """A status, a JSON body (``None``: no body) and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str, error_code: str | None = None) -> Reply:
    """An error answered with the SDK's ``Error`` model, as E2B's API does."""
    error = Error(code=status, message=message) if error_code is None else Error(status, message, error_code)
    return Reply(status, error.to_dict())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


class Endpoints:
    """The sandboxes the plane knows and the answers about them (the HTTP part is ``ControlPlane``)."""

    clock: Callable[[], datetime] = staticmethod(now)

    def __init__(
        self,
        *,
        plane_id: str,
        client: Any,
        image: str,
        templates: frozenset[str],
        domain: str,
        envd_version: str,
        default_timeout_s: int,
        max_timeout_s: int,
        default_page_size: int,
        max_page_size: int,
    ) -> None:
        self.plane_id, self.client, self.image, self.domain = plane_id, client, image, domain
        self.templates, self.envd_version = templates, envd_version
        self.default_timeout_s, self.max_timeout_s = default_timeout_s, max_timeout_s
        self.default_page_size, self.max_page_size = default_page_size, max_page_size
        self._cond = threading.Condition()
        """Guards the records; notified whenever an end time changes (the expiry thread waits on it)."""
        self._sandboxes: dict[str, SandboxRecord] = {}
        self._idempotency: dict[str, tuple[Any, Reply | None]] = {}
        """Idempotency key -> (request body, reply; ``None`` while the create is under way)."""

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Mapping[str, str]
    ) -> Reply:
        match method, path.strip("/").split("/"):
            case "POST", ["v2", "sandboxes"]:
                return self._create(body, headers.get("Idempotency-Key"))
            case "GET", ["v2", "sandboxes"]:
                return self._list(query)
            case "GET", ["sandboxes", sandbox_id]:
                return self._get(sandbox_id)
            case "DELETE", ["sandboxes", sandbox_id]:
                return self._kill(sandbox_id)
            case "POST", ["sandboxes", sandbox_id, "timeout"]:
                return self._set_timeout(sandbox_id, body)
            case "POST", ["sandboxes", sandbox_id, "pause"]:
                return self._pause(sandbox_id)
            case "POST", ["v2", "sandboxes", sandbox_id, "connect"]:
                return self._connect(sandbox_id, body)
        # Not 404: the SDK would read it as "no such sandbox". An endpoint the stand-in lacks says so.
        return error_reply(501, f"{method} {path} is not served by the E2B stand-in")

    # ------------------------------------------------------------------ create and list

    def _timeout_problem(self, timeout: object) -> str | None:
        if not _is_int(timeout) or timeout < 0:  # type: ignore[operator]
            return f"Error when parsing request: timeout must be a non-negative integer, not {timeout!r}"
        if timeout > self.max_timeout_s:  # type: ignore[operator]
            return f"Timeout cannot be greater than {self.max_timeout_s // 3600} hours"
        return None

    def _create(self, body: Any, key: str | None) -> Reply:
        try:
            spec = NewSandboxV2.from_dict(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return error_reply(400, f"Error when parsing request: {exc!r}")
        timeout = self.default_timeout_s if isinstance(spec.timeout, Unset) else spec.timeout
        problem = self._timeout_problem(timeout)
        for name, ok in (
            ("templateID", isinstance(spec.template_id, str)),
            ("autoPause", isinstance(spec.auto_pause, Unset | bool)),
            ("metadata", isinstance(spec.metadata, Unset) or _is_str_map(spec.metadata)),
            ("envVars", isinstance(spec.env_vars, Unset) or _is_str_map(spec.env_vars)),
        ):
            problem = problem or (None if ok else f"Error when parsing request: {name} has the wrong type")
        if problem:
            return error_reply(400, problem)
        alias = next((t for t in self.templates if spec.template_id in (t, template_id_for(t))), None)
        if alias is None:
            return error_reply(404, f"template '{spec.template_id}' not found")
        if key is not None:
            with self._cond:
                if key in self._idempotency:
                    seen_body, seen_reply = self._idempotency[key]
                    if seen_body != body:
                        return error_reply(
                            422, "Idempotency key reused with another request", "idempotency_request_mismatch"
                        )
                    if seen_reply is None:
                        return error_reply(
                            409, "A request with this idempotency key is in progress", "idempotency_in_progress"
                        )
                    return seen_reply
                self._idempotency[key] = (body, None)
        sandbox_id = "sbx" + secrets.token_hex(8)
        env = {} if isinstance(spec.env_vars, Unset) else spec.env_vars
        try:
            container_id = create_sandbox_container(self.client, self.image, sandbox_id, self.plane_id, env)
        except Exception as exc:
            if key is not None:
                with self._cond:
                    self._idempotency.pop(key, None)
            return error_reply(500, f"the sandbox could not be created: {exc}", "sandbox_create_failed")
        started = self.clock()
        record = SandboxRecord(
            sandbox_id=sandbox_id,
            alias=alias,
            envd_version=self.envd_version,
            envd_access_token=secrets.token_hex(16),
            container_id=container_id,
            started_at=started,
            end_at=started + timedelta(seconds=timeout),
            metadata={} if isinstance(spec.metadata, Unset) else dict(spec.metadata),
            auto_pause=spec.auto_pause is True,
            auto_resume=not isinstance(spec.auto_resume, Unset) and spec.auto_resume.enabled is True,
            allow_internet_access=None if isinstance(spec.allow_internet_access, Unset) else spec.allow_internet_access,
        )
        reply = Reply(201, record.created(self.domain).to_dict())
        with self._cond:
            self._sandboxes[sandbox_id] = record
            if key is not None:
                self._idempotency[key] = (body, reply)
            self._cond.notify_all()
        return reply

    def _list(self, query: dict[str, list[str]]) -> Reply:
        try:
            parsed = parse_list_query(query, self.default_page_size, self.max_page_size)
        except ValueError as exc:
            return error_reply(400, str(exc))
        with self._cond:
            items, token = page(list(self._sandboxes.values()), parsed)
            body = [record.listed().to_dict() for record in items]
        return Reply(200, body, {"X-Next-Token": token} if token else {})

    # ------------------------------------------------------------------ one sandbox

    def _get(self, sandbox_id: str) -> Reply:
        with self._cond:
            record = self._sandboxes.get(sandbox_id)
            if record is None:
                return error_reply(404, f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")
            return Reply(200, record.detail(self.domain).to_dict())

    def _kill(self, sandbox_id: str) -> Reply:
        with self._cond:
            record = self._sandboxes.pop(sandbox_id, None)
            self._cond.notify_all()
        if record is None:
            return error_reply(404, f"Sandbox '{sandbox_id}' not found")
        self.remove_container(record)
        return Reply(204, None)

    def _set_timeout(self, sandbox_id: str, body: Any) -> Reply:
        try:
            timeout = SandboxTimeoutRequest.from_dict(body).timeout
        except (KeyError, TypeError, AttributeError) as exc:
            return error_reply(400, f"Error when parsing request: {exc!r}")
        problem = self._timeout_problem(timeout)
        if problem:
            return error_reply(400, problem)
        with self._cond:
            record = self._sandboxes.get(sandbox_id)
            # Like E2B's: only a running sandbox has a timeout to set; a paused one is a 404.
            if record is None or record.state != SandboxState.RUNNING:
                return error_reply(404, f"Sandbox '{sandbox_id}' not found")
            record.end_at = self.clock() + timedelta(seconds=timeout)
            self._cond.notify_all()
        return Reply(204, None)

    def _pause(self, sandbox_id: str) -> Reply:
        with self._cond:
            record = self._sandboxes.get(sandbox_id)
            if record is None:
                return error_reply(404, f"Sandbox '{sandbox_id}' not found")
            if record.state == SandboxState.PAUSED:
                return error_reply(409, f"Sandbox '{sandbox_id}' is already paused")
            record.state, record.end_at = SandboxState.PAUSED, self.clock()
            self._cond.notify_all()
        self.pause_container(record)
        return Reply(204, None)

    def _connect(self, sandbox_id: str, body: Any) -> Reply:
        try:
            requested = ConnectSandboxV2.from_dict(body or {}).timeout
        except (KeyError, TypeError, AttributeError) as exc:
            return error_reply(400, f"Error when parsing request: {exc!r}")
        # The schema's default (300 s) when the SDK leaves the timeout out, as it does unless told.
        timeout = CONNECT_TIMEOUT_S if isinstance(requested, Unset) else requested
        problem = self._timeout_problem(timeout)
        if problem:
            return error_reply(400, problem)
        with self._cond:
            record = self._sandboxes.get(sandbox_id)
        if record is None:
            return error_reply(404, f"Sandbox '{sandbox_id}' not found")
        with record.lock:
            with self._cond:
                if record.state == SandboxState.RUNNING:
                    # A running sandbox's timeout is only ever extended by a connect.
                    record.end_at = max(record.end_at, self.clock() + timedelta(seconds=timeout))
                    self._cond.notify_all()
                    return Reply(200, record.created(self.domain).to_dict())
            try:
                self.client.api.unpause(record.container_id)
            except docker.errors.NotFound:
                with self._cond:
                    self._sandboxes.pop(sandbox_id, None)
                return error_reply(404, f"Sandbox '{sandbox_id}' not found")
            with self._cond:
                # Resuming starts the sandbox anew, as E2B's resume does: new start time, new end.
                record.state, record.started_at = SandboxState.RUNNING, self.clock()
                record.end_at = record.started_at + timedelta(seconds=timeout)
                self._cond.notify_all()
        return Reply(201, record.created(self.domain).to_dict())

    # ------------------------------------------------------------------ containers

    def pause_container(self, record: SandboxRecord) -> None:
        with record.lock:
            with self._cond:
                if record.state != SandboxState.PAUSED:
                    return  # resumed meanwhile
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.api.pause(record.container_id)

    def remove_container(self, record: SandboxRecord) -> None:
        with record.lock, contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(record.container_id, force=True)
