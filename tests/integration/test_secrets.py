"""Secrets never leak: one scripted session against `workspaces serve`, then everything it said, searched.

The runtime runs as a process of its own (debug logging, HTTP API and metrics on), with a
GitHub App whose key is a fresh RSA key and a stand-in GitHub that issues installation
tokens. The session registers the App, clones a private repository with it, fails to
clone in several ways (a missing repository, a missing ref, URLs carrying a token), sends
wrong and misplaced tokens over ZeroMQ and HTTP, runs commands, reads the HTTP API, the
metrics page and the CLI's output, and stops gracefully. Then the auth token, the App's
private key, the installation token, the encryption key and the token inside a URL are
searched for in the runtime's log, every reply, every event, every HTTP body, the CLI's
output, every byte under the state directory (but the token file, where the auth token is
kept by design) and the workspace's own files.
"""

from __future__ import annotations

import base64
import inspect
import secrets
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import msgspec
import pytest
import zmq

from runtime.errors import Timeout, WorkspaceError
from runtime.providers.base import LABEL_ID
from runtime.providers.docker import MANAGED_NETWORK
from runtime.wire import Client, Subscriber
from tests.conftest import remove_leftovers
from tests.github_standins import FakeGithubApi, GitServer, make_repo, private_key_pem
from tests.serving import WORKSPACES, Server, cli, free_port, serve_env

pytestmark = pytest.mark.docker

API = "/api/v1/agent/workspaces"
GITHUB = "/api/v1/agent/github"
APP_ID, INSTALLATION = 5151, 88
PEM = private_key_pem(seed=5)  # a key of this module's own
ENCRYPTION_KEY = secrets.token_hex(32)
NEW_ENCRYPTION_KEY = secrets.token_hex(32)  # rotated to by the CLI during the session
WRONG_TOKEN = f"wrong-{secrets.token_urlsafe(24)}"
URL_WITH_TOKEN = "a URL carrying the installation token"
"""In the name of every place answering a request whose repository URL carries the token."""


@dataclass
class Session:
    """What one session said, place by place, and what it learnt on the way."""

    said: list[tuple[str, bytes]] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    sse: bytes = b""
    workspace_files: dict[str, bytes] = field(default_factory=dict)
    token: str = ""
    token_mode: int = 0
    token_file: bytes = b""
    installation_token: str = ""
    log: str = ""
    stop_code: int | None = None
    clone_commit: str = ""
    commit: str = ""
    state_files: list[Path] = field(default_factory=list)

    def add(self, place: str, data: bytes | str) -> None:
        self.said.append((place, data.encode() if isinstance(data, str) else bytes(data)))

    def secrets(self) -> dict[str, bytes]:
        """Each secret (and each form of it) that must appear nowhere, by name."""
        body = [line for line in PEM.decode().splitlines() if "-----" not in line]
        joined = "".join(body)
        found = {
            "the auth token": self.token,
            "the installation token": self.installation_token,
            "the installation token in a URL": f"x-access-token:{self.installation_token}@",
            "GITHUB_APP_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "the GITHUB_APP_ENCRYPTION_KEY rotated to": NEW_ENCRYPTION_KEY,
            "a slice of the private key's base64": joined[200:264],
            "the wrong token a client sent": WRONG_TOKEN,
        }
        found |= {f"line {n} of the private key": line for n, line in enumerate(body, 1)}
        return {name: secret.encode() for name, secret in found.items()}


def leaks(session: Session, haystack: list[tuple[str, bytes]]) -> list[str]:
    """``secret in place`` for every secret found in a place of ``haystack``."""
    assert session.token and session.installation_token, "the session did not learn its secrets"
    return [f"{name} in {place}" for place, data in haystack for name, secret in session.secrets().items()
            if secret in data]  # fmt: skip


class EventLog:
    """Every event of the stream, kept raw (re-encoded as published) by a thread of its own."""

    def __init__(self, endpoint: str, token: str) -> None:
        # Another part of the security work gives Subscriber a token; pass it when it has one.
        accepts_token = "token" in inspect.signature(Subscriber).parameters
        extra: dict[str, Any] = {"token": token} if accepts_token else {}
        self._subscriber = Subscriber(endpoint, **extra)
        self.raw: list[bytes] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                _, event = self._subscriber.recv(0.2)
            except Timeout:
                continue
            self.raw.append(msgspec.msgpack.encode(event))

    def close(self) -> list[bytes]:
        self._done.set()
        self._thread.join(10)
        self._subscriber.close()
        return self.raw


class SseLog:
    """The HTTP API's event stream (server-sent events), read whole until the runtime ends it."""

    def __init__(self, base: str, token: str) -> None:
        self._http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        self._context = self._http.stream("GET", f"{API}/events", timeout=httpx.Timeout(60, read=600))
        response = self._context.__enter__()  # the headers are in: the stream is subscribed
        assert response.status_code == 200, response.read()
        self.raw = bytearray()
        self._thread = threading.Thread(target=self._run, args=(response,), daemon=True)
        self._thread.start()

    def _run(self, response: httpx.Response) -> None:
        for chunk in response.iter_raw():
            self.raw += chunk

    def close(self) -> bytes:
        """The stream as received; call once the runtime stopped (which ends the stream)."""
        self._thread.join(60)
        assert not self._thread.is_alive(), "the event stream did not end when the runtime stopped"
        self._context.__exit__(None, None, None)
        self._http.close()
        return bytes(self.raw)


def _gateway(client: docker.DockerClient) -> str:
    return str(client.networks.get(MANAGED_NETWORK).attrs["IPAM"]["Config"][0]["Gateway"])


def _ask(session: Session, client: Client, op: str, args: dict[str, Any] | None = None, about: str = "") -> Any:
    """``op`` over ZeroMQ; its reply (result or error) is kept as said."""
    try:
        raw = client.request(op, args, timeout_s=300)
    except WorkspaceError as exc:
        session.add(f"the error reply to {op}{about}", f"{exc.code}: {exc.message}")
        return exc
    session.add(f"the reply to {op}{about}", bytes(raw))
    return msgspec.msgpack.decode(raw)


def _raw_frames(session: Session, endpoint: str, token: str) -> None:
    """Malformed requests that carry the token: their bad_request replies must not quote it."""
    frames = {
        "a request whose args are not a map": msgspec.msgpack.encode(
            {"id": "r1", "op": "ping", "token": token, "args": 5}
        ),
        "a request with an unknown op": msgspec.msgpack.encode({"id": "r2", "op": "nope", "token": token, "args": {}}),
        "a frame that is not MessagePack": b"\xc1" + token.encode(),
        "a request whose token is not a string": msgspec.msgpack.encode(
            {"id": "r3", "op": "ping", "token": [token], "args": {}}
        ),
    }
    sock: zmq.Socket[bytes]
    with zmq.Context.instance().socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        for name, frame in frames.items():
            sock.send(frame)
            assert sock.poll(30_000), f"no reply to {name}"
            session.add(f"the reply to {name}", sock.recv())


def _http(session: Session, base: str, token: str, workspace: str, missing_url: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=300) as http:

        def get(place: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
            response = http.get(path, headers=headers if headers is not None else bearer, **kw)
            session.add(f"HTTP {place} ({response.status_code})", response.content)
            return response

        assert get("providers", f"{API}/providers").status_code == 200
        for place, path in (("list", API), ("get", f"{API}/{workspace}"), ("stats", f"{API}/stats"),
                            ("apps", f"{GITHUB}/apps"), ("audit", f"{GITHUB}/audit"), ("admin page", "/"),
                            ("readyz", "/readyz"), ("openapi", "/api/v1/openapi.json")):  # fmt: skip
            get(place, path)
        get("read_file", f"{API}/{workspace}/files", params={"path": "notes.txt"})
        misplaced = {
            "no token": {},
            "a wrong bearer token": {"Authorization": f"Bearer {WRONG_TOKEN}"},
            "the token in X-Auth-Token": {"X-Auth-Token": token},
            "the token as 'Authorization: token'": {"Authorization": f"token {token}"},
            "the token as Basic auth": {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()},
            "the token with the wrong scheme case": {"Authorization": f"bearer  {token} x"},
        }
        for place, headers in misplaced.items():
            assert get(f"providers with {place}", f"{API}/providers", headers).status_code == 401
        assert get("providers with the token in the query", f"{API}/providers", {}, params={"token": token}).is_error
        assert get("events with a wrong token", f"{API}/events", {"Authorization": f"Bearer {WRONG_TOKEN}"}).is_error
        cloned = http.post(f"{API}/{workspace}/git/clone", headers=bearer,
                           json={"repo": missing_url, "app": "ci-bot", "path": "over-http"})  # fmt: skip
        session.add(f"HTTP git clone of {URL_WITH_TOKEN} ({cloned.status_code})", cloned.content)
        assert cloned.is_error
        bad_app = {"app_id": "x", "installation_id": INSTALLATION, "private_key": PEM.decode()}
        refused = http.put(f"{GITHUB}/apps/bad", headers=bearer, json=bad_app)
        session.add(f"HTTP github_app_set with a bad app_id ({refused.status_code})", refused.content)
        assert refused.status_code == 422
        broken = http.put(f"{GITHUB}/apps/bad", headers=bearer, content=b'{"private_key": "' + PEM + b'"')
        session.add(f"HTTP github_app_set with a body that is not JSON ({broken.status_code})", broken.content)
        assert broken.is_error


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Session]:
    """The scripted session, run once; the tests below search what it collected."""
    tmp = tmp_path_factory.mktemp("secrets")
    state_dir = tmp / "state"
    api = FakeGithubApi()
    api.register(APP_ID, INSTALLATION, PEM)
    repos = tmp / "repos"
    repos.mkdir()
    found = Session(commit=make_repo(repos, "private.git", {"README.md": "plans\n"}))
    http_addr, metrics_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = serve_env(state_dir, WORKSPACE_HTTP_ADDR=http_addr, WORKSPACE_METRICS_ADDR=metrics_addr,
                    GITHUB_APP_ENCRYPTION_KEY=ENCRYPTION_KEY, GITHUB_API_URL=api.url,
                    WORKSPACE_MCP_CONFIG=str(tmp / "no-mcp.toml"))  # fmt: skip
    server = Server(env, argv=[*WORKSPACES, "--log-level", "DEBUG", "serve"])
    git: GitServer | None = None
    sse: SseLog | None = None
    events: EventLog | None = None
    try:
        server.wait_ready()
        token_file = state_dir / "token"
        found.token = token_file.read_text().strip()
        found.token_mode = stat.S_IMODE(token_file.stat().st_mode)
        found.token_file = token_file.read_bytes()
        events = EventLog(env["WORKSPACE_ZMQ_EVENTS_ENDPOINT"], found.token)
        sse = SseLog(f"http://{http_addr}", found.token)
        git = _script(found, env, api, repos, docker_client, http_addr, metrics_addr)
    finally:
        found.stop_code = server.stop(signal.SIGINT)  # the graceful stop, heard by both event streams
        found.log = server.log
        if events is not None:
            found.events = events.close()
        if sse is not None:
            found.sse = sse.close()
        leftovers = remove_leftovers(docker_client, server.instance())
        if git is not None:
            git.stop()
        api.stop()
    assert not leftovers, f"the session left these behind: {leftovers}"
    found.add("the runtime's log", found.log)
    for path in sorted(state_dir.rglob("*")):
        if path.is_file() and path != state_dir / "token":
            found.state_files.append(path)
            found.add(f"the state file {path.relative_to(state_dir)}", path.read_bytes())
    yield found


def _script(
    found: Session,
    env: dict[str, str],
    api: FakeGithubApi,
    repos: Path,
    docker_client: Any,
    http_addr: str,
    metrics_addr: str,
) -> GitServer:
    endpoint = env["WORKSPACE_ZMQ_ENDPOINT"]
    with Client(endpoint, found.token, timeout_s=300) as client:
        ask: Callable[..., Any] = lambda op, args=None, about="": _ask(found, client, op, args, about)  # noqa: E731
        app = ask("github_app_set", {"name": "ci-bot", "app_id": APP_ID, "installation_id": INSTALLATION,
                                     "private_key": PEM.decode()})  # fmt: skip
        assert app["name"] == "ci-bot", app
        for bad in (
            {"app_id": 0},
            {"app_id": "x"},
            {"name": "no spaces"},
            {"private_key": PEM.decode()[:-90]},
            {"private_key": [PEM.decode()]},
            {"private_key": PEM},
            {"private_key": PEM.decode() * 8},
        ):
            args = {"name": "bad", "app_id": APP_ID, "installation_id": INSTALLATION, "private_key": PEM.decode()}
            assert isinstance(ask("github_app_set", args | bad), WorkspaceError)
        assert [listed["name"] for listed in ask("github_app_list")] == ["ci-bot"]
        workspace = ask("create")["id"]
        git = GitServer(repos, host=_gateway(docker_client), private={"private.git"}, accepts=api.valid)
        try:
            cloned = ask("git_clone", {"workspace_id": workspace, "repo": git.url("private.git"), "app": "ci-bot"})
            found.clone_commit = cloned["commit"]
            found.installation_token = api.issued[0].token
            with_token = git.url("").replace("http://", f"http://x-access-token:{found.installation_token}@")
            clones: tuple[dict[str, str], ...] = (
                {"repo": git.url("missing.git"), "app": "ci-bot", "path": "missing"},
                {"repo": git.url("private.git"), "app": "ci-bot", "ref": "no-such-branch", "path": "bad-ref"},
                {"repo": with_token + "missing.git", "app": "ci-bot", "path": "missing-with-token"},
                {"repo": with_token + "missing.git", "path": "missing-token-only"},
                {"repo": with_token + "private.git", "path": "embedded"},
                {"repo": "http://127.0.0.1:9/private.git", "app": "ci-bot", "path": "unreachable"},
            )
            for clone in clones:
                about = f" for {URL_WITH_TOKEN}" if "@" in clone["repo"] else ""
                assert isinstance(ask("git_clone", {"workspace_id": workspace, **clone}, about), WorkspaceError), clone
            ask("github_audit")
            ask("exec", {"workspace_id": workspace, "cmd": "env; id; cat ~/.bash_history ~/.git-credentials || true"})
            ask("write_file", {"workspace_id": workspace, "path": "notes.txt", "data": b"plain notes\n"})
            assert ask("read_file", {"workspace_id": workspace, "path": "notes.txt"})["data"] == b"plain notes\n"
            _workspace_files(found, ask, workspace)
            with Client(endpoint, WRONG_TOKEN, timeout_s=30) as stranger:
                _ask(found, stranger, "ping")
                _ask(found, stranger, "github_app_list")
            _raw_frames(found, endpoint, found.token)
            _http(found, f"http://{http_addr}", found.token, workspace, with_token + "missing.git")
            metrics = httpx.get(f"http://{metrics_addr}/metrics", timeout=60)
            assert metrics.status_code == 200
            found.add("the metrics page", metrics.content)
            _cli(found, env, workspace, with_token + "missing.git")
            container = docker_client.containers.list(all=True, filters={"label": f"{LABEL_ID}={workspace}"})
            for each in container:
                found.add("the workspace container's inspect", msgspec.json.encode(each.attrs))
                found.add("the workspace container's log", each.logs())
            ask("destroy", {"workspace_id": workspace})
            ask("stats")
        except BaseException:
            git.stop()
            raise
    return git


def _workspace_files(found: Session, ask: Callable[..., Any], workspace: str) -> None:
    """The clones' git config, the shell's history and environment, and a search of the whole filesystem."""
    script = (
        "cat /workspace/private/.git/config; "
        "cat /proc/1/environ | tr '\\0' '\\n'; "
        "cat ~/.bash_history ~/.sh_history ~/.ash_history ~/.git-credentials ~/.gitconfig 2>/dev/null; true"
    )
    done = ask("exec", {"workspace_id": workspace, "cmd": script})
    found.workspace_files["git configs, environment and history"] = done["stdout"] + done["stderr"]
    # Each secret goes in as two halves, joined by the shell: the request carrying them holds no secret whole.
    search = (
        'for d in /*; do case $d in /proc|/sys|/dev) ;; *) grep -rlsF -D skip -e "$A1$A2" -e "$B1$B2" -e "$C1$C2" '
        '"$d";; esac; done; true'
    )
    needles: dict[str, str] = {}
    for name, secret in (("A", found.installation_token), ("B", found.token), ("C", PEM.decode().splitlines()[3])):
        needles |= {f"{name}1": secret[:10], f"{name}2": secret[10:]}
    done = ask("exec", {"workspace_id": workspace, "cmd": search, "env": needles, "timeout_s": 240})
    found.workspace_files["files in the workspace holding a secret"] = done["stdout"]
    planted = f"planted-{secrets.token_hex(16)}"
    ask("write_file", {"workspace_id": workspace, "path": "planted.txt", "data": planted.encode()})
    control = {"A1": planted[:10], "A2": planted[10:], "B1": planted[:10], "B2": planted[10:], "C1": "", "C2": planted}
    done = ask("exec", {"workspace_id": workspace, "cmd": search, "env": control, "timeout_s": 240})
    found.workspace_files["the planted file, found by the same search"] = done["stdout"]


def _cli(found: Session, env: dict[str, str], workspace: str, missing_url: str) -> None:
    """The CLI's output, with the token and the encryption key in its environment."""
    with_token = {**env, "WORKSPACE_AUTH_TOKEN": found.token}
    runs = {
        "doctor": (with_token, ("doctor",)),
        "doctor --json": (with_token, ("doctor", "--json")),
        "providers": (with_token, ("providers",)),
        "ls --json": (with_token, ("ls", "--json")),
        "stats": (with_token, ("stats",)),
        "github ls": (with_token, ("github", "ls")),
        "github audit": (with_token, ("github", "audit")),
        "github rotate-key": (with_token, ("github", "rotate-key", "--key-file", "-")),
        "github ls after the rotation": (with_token, ("github", "ls")),
        f"git clone of {URL_WITH_TOKEN}": (with_token, ("git", "clone", workspace, missing_url, "--path", "cli")),
        "ls with a wrong token": ({**env, "WORKSPACE_AUTH_TOKEN": WRONG_TOKEN}, ("ls",)),
    }
    for name, (variables, args) in runs.items():
        done = cli(variables, *args, stdin=NEW_ENCRYPTION_KEY.encode() if "rotate-key" in args else None)
        found.add(f"`workspaces {name}` output", done.stdout + done.stderr)
        if name != "ls with a wrong token" and "clone" not in name:
            assert done.returncode == 0 or name.startswith("doctor"), (name, done.stderr)
    said = dict(found.said)
    assert "ci-bot" in said["`workspaces github ls after the rotation` output"].decode()
    assert b"re-encrypted 1 GitHub App key(s)" in said["`workspaces github rotate-key` output"]


# ---------------------------------------------------------------------- the searches


def _places(session: Session, *starts: str, having: str = "") -> list[tuple[str, bytes]]:
    """What was said in places named ``starts…`` (or holding ``having``)."""
    return [(place, data) for place, data in session.said if (place.startswith(starts) if starts else having in place)]


def test_the_session_really_used_every_secret_and_the_search_finds_one_where_it_is(session: Session) -> None:
    assert session.clone_commit == session.commit  # the private clone went through with the App's token
    assert session.installation_token.startswith("ghs_")
    assert session.stop_code == 0 and "runtime stopped" in session.log
    assert " DEBUG " in session.log, "the runtime did not log at debug level"
    assert sum(b"github.used" in raw for raw in session.events) >= 4  # the clones with the App, audited
    refused = [data for place, data in session.said if URL_WITH_TOKEN in place]
    assert len(refused) == 5 and all(b"bad_request" in data for data in refused)  # 3 over ZeroMQ, HTTP, CLI
    assert leaks(session, [("the token file", session.token_file)]) == ["the auth token in the token file"]
    assert session.workspace_files["the planted file, found by the same search"] == b"/workspace/planted.txt\n"


def test_the_auth_token_is_kept_in_a_token_file_only_its_owner_can_read(session: Session) -> None:
    assert session.token_mode == 0o600


def test_no_secret_is_in_the_runtimes_log(session: Session) -> None:
    assert leaks(session, [("the runtime's log", session.log.encode())]) == []


def test_no_secret_is_in_any_reply_or_error_message(session: Session) -> None:
    replies = _places(session, having="reply")
    assert sum(b"bad_request" in data for _, data in replies) >= 5
    assert sum(b"unauthorized" in data for _, data in replies) >= 2
    assert leaks(session, replies) == []


def test_no_secret_is_in_any_event_over_zeromq_or_http(session: Session) -> None:
    assert session.sse.count(b"event: github.used") >= 4  # the HTTP stream carried the whole session
    over_http = [("the HTTP event stream", session.sse)]
    assert leaks(session, [(f"event {n}", raw) for n, raw in enumerate(session.events)] + over_http) == []


def test_no_secret_is_in_any_http_body_or_the_metrics_page(session: Session) -> None:
    bodies = _places(session, "HTTP", "the metrics")
    assert sum("(401)" in place for place, _ in bodies) == 8
    assert leaks(session, bodies) == []


def test_no_secret_is_in_the_clis_output(session: Session) -> None:
    assert leaks(session, _places(session, "`workspaces")) == []


def test_no_secret_is_in_any_file_of_the_state_directory(session: Session) -> None:
    files = _places(session, "the state file")
    assert any(place.endswith("data.mdb") for place, _ in files)  # the state log, sealed App keys and all
    assert leaks(session, files) == []


def test_no_secret_is_in_the_workspace_its_clone_its_environment_or_its_container(session: Session) -> None:
    seen = session.workspace_files
    assert seen["files in the workspace holding a secret"] == b""
    assert b'[remote "origin"]' in seen["git configs, environment and history"]
    inside = [(f"the workspace's {name}", data) for name, data in seen.items()]
    assert leaks(session, inside + _places(session, "the workspace container")) == []


def test_a_url_carrying_a_token_is_refused_without_quoting_it(session: Session) -> None:
    refused = [(place, data) for place, data in session.said if URL_WITH_TOKEN in place]
    assert leaks(session, refused) == []
