"""A Python client for wire protocol v1.

``Client`` is a DEALER socket with one method per op. It sends the vocabulary's own
argument structs (``runtime.messages.args``), so a request carries exactly the fields
the server decodes, by the same rules; results come back as the vocabulary's typed
records and failures as ``WorkspaceError`` families. A client is not thread-safe: use
one per thread. Replies to requests that already timed out are recognised by their id
and dropped. Events are read with a ``Subscriber`` (``Client.subscribe``: with the same
credentials). Given the server's public key and a key pair, it connects by CURVE.
"""

from __future__ import annotations

import builtins
import itertools
import secrets
import time
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

import msgspec
import zmq

from runtime.errors import Timeout, WorkspaceError, error_for_code
from runtime.messages import (
    ArgsStruct,
    AuditArgs,
    CloneResult,
    CreateArgs,
    ErrorBody,
    ExecArgs,
    ExecKillArgs,
    ExecOutputArgs,
    ExecResult,
    ExecStdinArgs,
    ExtendArgs,
    FileData,
    GitCloneArgs,
    GithubApp,
    GithubAppArgs,
    GithubAppSetArgs,
    GithubCredentialUsed,
    GithubKeyArgs,
    ListArgs,
    McpCallArgs,
    McpServerStatus,
    OutputPage,
    ProcessInfo,
    ProviderStatus,
    ReadFileArgs,
    Request,
    Snapshot,
    WorkspaceArgs,
    WorkspaceRecord,
    WriteFileArgs,
    decode_as,
    decode_reply,
    encode,
)
from runtime.wire.keys import KeyPair
from runtime.wire.security import client_socket
from runtime.wire.subscriber import Subscriber

__all__ = ["Client", "RunKwargs"]

_EXEC_WAIT_WITHOUT_TIMEOUT_S = 600.0
_EXEC_WAIT_MARGIN_S = 30.0
_RETRY_PAUSE_S = 0.2
_RETRY_PAUSE_MAX_S = 2.0
_MALFORMED = ErrorBody("internal", "malformed error reply", False)


class RunKwargs(TypedDict, total=False):
    """How a command runs, as ``Client.exec`` and ``Client.spawn`` take it.

    Attributes:
        cwd: Working directory (default ``/workspace``).
        env: Extra environment variables.
        stdin: Bytes fed to the command's standard input.
        timeout_s: Kill the command's process group after this long.
    """

    cwd: str | None
    env: Mapping[str, str] | None
    stdin: bytes | None
    timeout_s: float | None


def _exec_args(workspace_id: str, cmd: list[str] | str, options: RunKwargs, **extra: Any) -> ExecArgs:
    env = options.get("env")
    return ExecArgs(
        workspace_id=workspace_id, cmd=cmd, cwd=options.get("cwd"), env=dict(env or {}), stdin=options.get("stdin"),
        timeout_s=options.get("timeout_s"), **extra,
    )  # fmt: skip


class Client:
    """A connection to a runtime.

    Args:
        endpoint: The runtime's request endpoint (``tcp://``, ``ipc://`` or ``inproc://``).
        token: The shared secret (``WORKSPACE_AUTH_TOKEN`` or ``STATE_DIR/token``).
        context: The ZeroMQ context; required for ``inproc://`` (the runtime's own).
        timeout_s: How long to wait for a reply by default.
        retries: How many times a request that timed out or got a retryable error is
            sent again, with the same id (so it is never executed twice), before giving up.
        identity: The ROUTER identity (default: a random one); a client that must retry
            another client's requests, e.g. after its own restart, passes that identity.
        server_key: With ``client_keys``, connect by CURVE: the server's public key (Z85).
        client_keys: This client's CURVE key pair (its public key admitted by the server).

    The client's ROUTER identity is fixed for its lifetime, so a retry after the socket
    reconnected (say, to a restarted runtime) is recognised as the same request.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        timeout_s: float = 30.0,
        retries: int = 0,
        identity: bytes | None = None,
        server_key: bytes | None = None,
        client_keys: KeyPair | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.identity = identity or f"client-{secrets.token_hex(8)}".encode()
        self._token = token
        self._context = context
        self._curve = (server_key, client_keys)
        self._socket = client_socket(
            context or zmq.Context.instance(), zmq.DEALER, server_key=server_key, client_keys=client_keys
        )
        self._socket.setsockopt(zmq.ROUTING_ID, self.identity)
        self._socket.connect(endpoint)
        self._ids = (f"{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        self._rcvtimeo = -1

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, events_endpoint: str, topics: tuple[str, ...] = ("",), *, context: Any = None) -> Subscriber:
        """A ``Subscriber`` to the runtime's events with this client's token, keys and (by default) context."""
        server_key, client_keys = self._curve
        return Subscriber(events_endpoint, topics, token=self._token, context=context or self._context,
                          server_key=server_key, client_keys=client_keys)  # fmt: skip

    # ------------------------------------------------------------------ transport

    def request(
        self,
        op: str,
        args: ArgsStruct | Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> msgspec.Raw:
        """Send one request and wait for its reply; return the raw ``result``.

        Args:
            op: The op name.
            args: The op's arguments: its struct, or a plain map.
            timeout_s: How long to wait (default: the client's ``timeout_s``).
            request_id: Reuse an id to retry a request without running it twice.

        Raises:
            WorkspaceError: The family of the server's error code, or ``Timeout``.
        """
        request_id = request_id or next(self._ids)
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        payload = encode(Request(request_id, op, self._token, msgspec.Raw(encode({} if args is None else args))))
        pause = _RETRY_PAUSE_S
        for attempt in range(self.retries + 1):
            try:
                return self._attempt(op, request_id, payload, wait_s)
            except WorkspaceError as exc:
                if not exc.retryable or attempt == self.retries:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _RETRY_PAUSE_MAX_S)
        raise AssertionError("unreachable")

    def _attempt(self, op: str, request_id: str, payload: bytes, wait_s: float) -> msgspec.Raw:
        self._socket.send(payload)
        deadline = time.monotonic() + wait_s
        wait_ms = max(1, int(wait_s * 1000))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"no reply to {op} from {self.endpoint} within {wait_s:g} s")
            timeout_ms = max(1, min(wait_ms, int(remaining * 1000) + 1))
            if timeout_ms != self._rcvtimeo:
                # A blocking recv with a timeout costs one wakeup; poll-then-recv costs two.
                self._socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
                self._rcvtimeo = timeout_ms
            try:
                frame = self._socket.recv()
            except zmq.Again:
                continue
            reply = decode_reply(frame)
            if reply.id != request_id:
                continue  # the late reply to a request that timed out earlier
            if reply.ok:
                return reply.result
            error = reply.error or _MALFORMED
            raise error_for_code(error.code, error.message, error.retryable)

    def call(
        self, op: str, args: ArgsStruct | Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        """Like ``request`` but return the result as plain data."""
        return msgspec.msgpack.decode(self.request(op, args, timeout_s=timeout_s))

    # ------------------------------------------------------------------ ops

    def ping(self) -> dict[str, Any]:
        """Check the runtime answers; returns ``{"version": ...}``."""
        return decode_as(self.request("ping"), dict[str, Any])

    def providers(self) -> builtins.list[ProviderStatus]:
        """Every provider's health, runtime and workspace count."""
        return decode_as(self.request("providers"), builtins.list[ProviderStatus])

    def create(
        self,
        *,
        provider: str | None = None,
        image: str | None = None,
        cpu: float | None = None,
        memory: int | str | None = None,
        disk: int | str | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        ttl_seconds: float | None = None,
        persistent: bool | None = None,
        timeout_s: float | None = None,
    ) -> WorkspaceRecord:
        """Create a workspace and wait until it is ready."""
        args = CreateArgs(
            provider=provider, image=image, cpu=cpu, memory=memory, disk=disk, env=dict(env or {}),
            labels=dict(labels or {}), ttl_seconds=ttl_seconds, persistent=bool(persistent),
        )  # fmt: skip
        return decode_as(self.request("create", args, timeout_s=timeout_s), WorkspaceRecord)

    def get(self, workspace_id: str) -> WorkspaceRecord:
        """One workspace's record."""
        return decode_as(self.request("get", WorkspaceArgs(workspace_id)), WorkspaceRecord)

    def list(
        self, *, labels: Mapping[str, str] | None = None, state: str | None = None
    ) -> builtins.list[WorkspaceRecord]:
        """Workspaces matching every label in ``labels`` (and ``state``, if given)."""
        args = ListArgs(labels=dict(labels or {}), state=state)  # type: ignore[arg-type]  # the server checks
        return decode_as(self.request("list", args), builtins.list[WorkspaceRecord])

    def exec(
        self,
        workspace_id: str,
        cmd: builtins.list[str] | str,
        *,
        wait_s: float | None = None,
        **options: Unpack[RunKwargs],
    ) -> ExecResult:
        """Run a command and wait for it.

        Args:
            workspace_id: The workspace.
            cmd: argv, or a string run by ``sh -c``.
            wait_s: How long this client waits for the reply (default: ``timeout_s`` plus
                30 s, or 600 s without a timeout).
            **options: ``cwd``, ``env``, ``stdin``, ``timeout_s`` (see ``RunKwargs``).
        """
        timeout_s = options.get("timeout_s")
        if wait_s is None:
            wait_s = _EXEC_WAIT_WITHOUT_TIMEOUT_S if timeout_s is None else timeout_s + _EXEC_WAIT_MARGIN_S
        return decode_as(self.request("exec", _exec_args(workspace_id, cmd, options), timeout_s=wait_s), ExecResult)

    def spawn(
        self,
        workspace_id: str,
        cmd: builtins.list[str] | str,
        *,
        stdin_open: bool = False,
        **options: Unpack[RunKwargs],
    ) -> ProcessInfo:
        """Start a command in the background (``exec`` with ``stream``); return at once.

        Its output and exit arrive as events on ``ProcessInfo.topic`` (see
        ``runtime.wire.follow``). ``stdin_open`` keeps its stdin open for ``exec_stdin``;
        otherwise ``stdin`` (if any) is all it reads. It runs until it exits, is killed,
        times out, or the workspace ends. ``options`` as for ``exec``.
        """
        args = _exec_args(workspace_id, cmd, options, stream=True, stdin_open=stdin_open)
        return decode_as(self.request("exec", args), ProcessInfo)

    def exec_stdin(self, workspace_id: str, process_id: str, data: bytes = b"", *, close: bool = False) -> None:
        """Write ``data`` to a streamed process's stdin; ``close`` ends its stdin."""
        self.request("exec_stdin", ExecStdinArgs(workspace_id=workspace_id, process_id=process_id, data=data,
                                                 close=close))  # fmt: skip

    def exec_kill(self, workspace_id: str, process_id: str, signal: str | int = "TERM") -> None:
        """Send ``signal`` (``TERM``, ``KILL``, ``INT``, a number...) to the process's whole group."""
        self.request("exec_kill", ExecKillArgs(workspace_id=workspace_id, process_id=process_id, signal=signal))

    def exec_list(self, workspace_id: str) -> builtins.list[ProcessInfo]:
        """The workspace's streamed processes, running and recently ended."""
        return decode_as(self.request("exec_list", WorkspaceArgs(workspace_id)), builtins.list[ProcessInfo])

    def exec_output(self, workspace_id: str, process_id: str, after: int = 0) -> OutputPage:
        """The output events kept for a process with ``seq > after`` (to fill a gap)."""
        args = ExecOutputArgs(workspace_id=workspace_id, process_id=process_id, after=after)
        return decode_as(self.request("exec_output", args), OutputPage)

    def destroy(self, workspace_id: str) -> None:
        """Destroy a workspace (destroying a destroyed workspace succeeds)."""
        self.request("destroy", WorkspaceArgs(workspace_id))

    def write_file(self, workspace_id: str, path: str, data: bytes, *, mode: int | None = None) -> None:
        """Write ``data`` to ``path`` under ``/workspace`` (parent directories are created)."""
        self.request("write_file", WriteFileArgs(workspace_id=workspace_id, path=path, data=data, mode=mode))

    def read_file(self, workspace_id: str, path: str) -> bytes:
        """The contents of ``path`` under ``/workspace``."""
        raw = self.request("read_file", ReadFileArgs(workspace_id=workspace_id, path=path))
        return decode_as(raw, FileData).data

    def extend(self, workspace_id: str, ttl_seconds: float) -> WorkspaceRecord:
        """Move the workspace's expiry to now + ``ttl_seconds``."""
        args = ExtendArgs(workspace_id=workspace_id, ttl_seconds=ttl_seconds)
        return decode_as(self.request("extend", args), WorkspaceRecord)

    def stats(self) -> dict[str, Any]:
        """Workspaces, pool, host resources, active alerts and per-workspace usage."""
        return decode_as(self.request("stats"), dict[str, Any])

    def snapshot(self) -> Snapshot:
        """Every live workspace's record and the event ``seq`` they reflect (to resync a subscriber)."""
        return decode_as(self.request("snapshot"), Snapshot)

    # ------------------------------------------------------------------ GitHub Apps

    def github_app_set(self, name: str, app_id: int, installation_id: int, private_key: str) -> GithubApp:
        """Register (or replace) a GitHub App; its private key (PEM) is stored only encrypted."""
        args = GithubAppSetArgs(name=name, app_id=app_id, installation_id=installation_id, private_key=private_key)
        return decode_as(self.request("github_app_set", args), GithubApp)

    def github_app_list(self) -> builtins.list[GithubApp]:
        """The registered GitHub Apps (never their keys)."""
        return decode_as(self.request("github_app_list"), builtins.list[GithubApp])

    def github_app_delete(self, name: str) -> None:
        """Forget a GitHub App and its key."""
        self.request("github_app_delete", GithubAppArgs(name))

    def github_key_rotate(self, key: str) -> int:
        """Re-encrypt every App's key under ``key`` (hex or base64); return how many were."""
        return int(decode_as(self.request("github_key_rotate", GithubKeyArgs(key)), dict[str, int])["rotated"])

    def github_audit(self, *, after: int = 0, limit: int = 100) -> builtins.list[GithubCredentialUsed]:
        """The recorded uses of credentials with ``seq > after``, oldest first."""
        raw = self.request("github_audit", AuditArgs(after=after, limit=limit))
        return decode_as(raw, builtins.list[GithubCredentialUsed])

    # ------------------------------------------------------------------ MCP servers

    def mcp_list(self) -> builtins.list[McpServerStatus]:
        """The configured MCP servers and their states."""
        return decode_as(self.request("mcp_list"), builtins.list[McpServerStatus])

    def mcp_call(self, name: str, message: Mapping[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """Send one JSON-RPC message to the MCP server ``name``; its response (``{}`` for a notification)."""
        raw = self.request("mcp_call", McpCallArgs(name=name, message=dict(message)), timeout_s=timeout_s)
        return decode_as(raw, dict[str, Any])

    def git_clone(
        self,
        workspace_id: str,
        repo: str,
        *,
        app: str | None = None,
        ref: str | None = None,
        path: str | None = None,
        depth: int | None = None,
        wait_s: float = _EXEC_WAIT_WITHOUT_TIMEOUT_S,
    ) -> CloneResult:
        """Clone ``repo`` (``owner/name`` or a URL) into the workspace, with ``app``'s credentials if given."""
        args = GitCloneArgs(workspace_id=workspace_id, repo=repo, app=app, ref=ref, path=path, depth=depth)
        return decode_as(self.request("git_clone", args, timeout_s=wait_s), CloneResult)
