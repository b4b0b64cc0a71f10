"""The REST face of the ops: one table, read by the router and by the OpenAPI document.

Each ``Endpoint`` says which op a method and path stand for and how the op's arguments
are made from the path, the query and the body. The arguments are then held to the same
rules as on ZeroMQ (the vocabulary's structs) and sent through the same Gateway.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["API", "ENDPOINTS", "Endpoint", "Incoming"]

API = "/api/v1/agent/workspaces"
GITHUB = "/api/v1/agent/github"
_DIGITS = re.compile("[0-9]+")


@dataclass(frozen=True)
class Incoming:
    """What an endpoint's arguments are made of."""

    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    json: dict[str, Any]

    def one(self, name: str) -> str | None:
        """The first value of a query parameter, if given."""
        values = self.query.get(name)
        return values[0] if values else None


Args = Callable[[Incoming], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    """One method and path of the REST API.

    Attributes:
        method: The HTTP method.
        path: The path, with ``{workspace_id}``, ``{process_id}`` or ``{name}`` parameters.
        op: The wire op it stands for.
        summary: One line for the OpenAPI document.
        args: Makes the op's arguments (as plain data) from the request.
        body: ``json`` (an object), ``raw`` (the bytes themselves) or ``none``.
        result: ``json``, or ``raw`` (the result's ``data`` as the body).
        status: The status of a success.
        query: The query parameters ``args`` reads.
    """

    method: str
    path: str
    op: str
    summary: str
    args: Args
    body: Literal["json", "raw", "none"] = "none"
    result: Literal["json", "raw"] = "json"
    status: int = 200
    query: tuple[str, ...] = ()


def _none(_: Incoming) -> dict[str, Any]:
    return {}


def _workspace(incoming: Incoming) -> dict[str, Any]:
    return {"workspace_id": incoming.params["workspace_id"]}


def _process(incoming: Incoming) -> dict[str, Any]:
    return {**_workspace(incoming), "process_id": incoming.params["process_id"]}


def _body_for_workspace(incoming: Incoming) -> dict[str, Any]:
    return {**incoming.json, **_workspace(incoming)}


def _list(incoming: Incoming) -> dict[str, Any]:
    labels = dict(label.partition("=")[::2] for label in incoming.query.get("label", []))
    state = incoming.one("state")
    return {"labels": labels, **({"state": state} if state else {})}


def _read(incoming: Incoming) -> dict[str, Any]:
    return {**_workspace(incoming), "path": incoming.one("path") or ""}


def _write(incoming: Incoming) -> dict[str, Any]:
    mode = incoming.one("mode")
    written: dict[str, Any] = {**_read(incoming), "data": incoming.body}
    if mode is not None:
        written["mode"] = (
            int(mode, 8) if re.fullmatch("[0-7]{1,4}", mode) else mode
        )  # any other: refused by the op's struct
    return written


def _stdin(incoming: Incoming) -> dict[str, Any]:
    return {**_process(incoming), "data": incoming.body, "close": incoming.one("close") in ("1", "true")}


def _output(incoming: Incoming) -> dict[str, Any]:
    after = incoming.one("after") or "0"
    return {**_process(incoming), "after": _number(after)}


def _audit(incoming: Incoming) -> dict[str, Any]:
    numbers = {name: incoming.one(name) for name in ("after", "limit")}
    return {name: _number(value) for name, value in numbers.items() if value is not None}


def _number(value: str) -> int | str:
    """ASCII digits as an int; anything else as given, for the op's struct to refuse."""
    return int(value) if _DIGITS.fullmatch(value) else value


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", f"{API}/providers", "providers", "Every provider's health (the Health API)", _none),
    Endpoint("GET", f"{API}/stats", "stats", "Capacity, host resources, pool, alerts, usage", _none),
    Endpoint("GET", f"{API}/snapshot", "snapshot", "Every live workspace and the event seq they reflect", _none),
    Endpoint(
        "GET",
        API,
        "list",
        "Workspaces, filtered by ?label=k=v (repeatable) and ?state=",
        _list,
        query=("label", "state"),
    ),
    Endpoint("POST", API, "create", "Create a workspace", lambda incoming: incoming.json, body="json", status=201),
    # Before `get`, whose `{workspace_id}` would take "mcp" (workspace ids are ws_…, never that).
    Endpoint("GET", f"{API}/mcp", "mcp_list", "The MCP servers: state, workspace, restarts, last error", _none),
    Endpoint("GET", f"{API}/{{workspace_id}}", "get", "One workspace's record", _workspace),
    Endpoint("DELETE", f"{API}/{{workspace_id}}", "destroy", "Destroy a workspace (idempotent)", _workspace),
    Endpoint(
        "POST",
        f"{API}/{{workspace_id}}/exec",
        "exec",
        "Run a command (stream: start it in the background)",
        _body_for_workspace,
        body="json",
    ),
    Endpoint("GET", f"{API}/{{workspace_id}}/exec", "exec_list", "Streamed processes, running and ended", _workspace),
    Endpoint(
        "POST",
        f"{API}/{{workspace_id}}/exec/{{process_id}}/stdin",
        "exec_stdin",
        "Write the body to a streamed process's stdin (?close=true ends it)",
        _stdin,
        body="raw",
        query=("close",),
    ),
    Endpoint(
        "POST",
        f"{API}/{{workspace_id}}/exec/{{process_id}}/kill",
        "exec_kill",
        "Signal a streamed process's group",
        lambda i: {**i.json, **_process(i)},
        body="json",
    ),
    Endpoint(
        "GET",
        f"{API}/{{workspace_id}}/exec/{{process_id}}/output",
        "exec_output",
        "The output kept for a process after ?after=SEQ",
        _output,
        query=("after",),
    ),
    Endpoint(
        "GET",
        f"{API}/{{workspace_id}}/files",
        "read_file",
        "A file under /workspace (?path=)",
        _read,
        result="raw",
        query=("path",),
    ),
    Endpoint(
        "PUT",
        f"{API}/{{workspace_id}}/files",
        "write_file",
        "Write the body to ?path= (?mode=755)",
        _write,
        body="raw",
        query=("path", "mode"),
    ),
    Endpoint(
        "POST",
        f"{API}/{{workspace_id}}/extend",
        "extend",
        "Move the expiry to now + ttl_seconds",
        _body_for_workspace,
        body="json",
    ),
    Endpoint(
        "POST",
        f"{API}/{{workspace_id}}/git/clone",
        "git_clone",
        "Clone a repository into the workspace",
        _body_for_workspace,
        body="json",
    ),
    Endpoint("GET", f"{GITHUB}/apps", "github_app_list", "The registered GitHub Apps (never their keys)", _none),
    Endpoint(
        "PUT",
        f"{GITHUB}/apps/{{name}}",
        "github_app_set",
        "Register or replace a GitHub App",
        lambda incoming: {**incoming.json, "name": incoming.params["name"]},
        body="json",
    ),
    Endpoint(
        "DELETE",
        f"{GITHUB}/apps/{{name}}",
        "github_app_delete",
        "Forget a GitHub App",
        lambda incoming: {"name": incoming.params["name"]},
    ),
    Endpoint(
        "POST",
        f"{GITHUB}/rotate-key",
        "github_key_rotate",
        "Re-encrypt every App's key under a new key",
        lambda incoming: incoming.json,
        body="json",
    ),
    Endpoint(
        "GET",
        f"{GITHUB}/audit",
        "github_audit",
        "Every use of a credential (?after=SEQ&limit=N)",
        _audit,
        query=("after", "limit"),
    ),
)
"""Every op of the protocol but ``ping`` (``/readyz`` and ``/healthz`` stand for it) and ``mcp_call``
(MCP's own streamable HTTP transport at ``{API}/mcp/{name}`` carries it: ``runtime.http.mcp``)."""
