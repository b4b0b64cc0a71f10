"""GitHub Apps end to end: real git, real cryptography, real workspaces, local stand-ins for GitHub.

A stand-in API checks the App's JWT and issues installation tokens; git's own
``git http-backend`` serves a private repository that only those tokens may read. The
workspaces reach both at the gateway of their network, as they would reach github.com.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from runtime.app import Runtime
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.github.store import PREFIX
from runtime.providers.docker import MANAGED_NETWORK
from runtime.wire import Client, Subscriber
from tests.conftest import MakeDockerRuntime
from tests.github_standins import FakeGithubApi, GitServer, make_repo, private_key_pem

pytestmark = pytest.mark.docker

KEY = "11" * 32
NEW_KEY = "22" * 32
APP_ID, INSTALLATION = 4242, 77


@dataclass
class GitHubWorld:
    runtime: Runtime
    client: Client
    events: Subscriber
    api: FakeGithubApi
    git: GitServer
    workspace: str
    commit: str
    private_url: str
    public_url: str
    log: list[str]


class Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def gateway(client: docker.DockerClient) -> str:
    network = client.networks.get(MANAGED_NETWORK)
    return str(network.attrs["IPAM"]["Config"][0]["Gateway"])


@pytest.fixture
def world(make_docker_runtime: MakeDockerRuntime, docker_client: Any, tmp_path: Path) -> Iterator[GitHubWorld]:
    api = FakeGithubApi()
    api.register(APP_ID, INSTALLATION, private_key_pem())
    lines: list[str] = []
    handler = Collect(lines)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    runtime = make_docker_runtime(
        runtimes=("runc",), github_app_encryption_key=bytes.fromhex(KEY), github_api_url=api.url
    )
    repos = tmp_path / "repos"
    repos.mkdir()
    commit = make_repo(repos, "private.git", {"README.md": "secret plans\n", "src/app.py": "print('hi')\n"})
    make_repo(repos, "public.git", {"README.md": "open\n"})
    git = None
    try:
        with runtime.client(timeout_s=300) as client, runtime.subscribe(("",)) as events:
            workspace = client.create().id  # the workspace network exists from here on
            git = GitServer(repos, host=gateway(docker_client), private={"private.git"}, accepts=api.valid)
            yield GitHubWorld(
                runtime, client, events, api, git, workspace, commit, git.url("private.git"), git.url("public.git"),
                lines,
            )  # fmt: skip
            client.destroy(workspace)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        if git is not None:
            git.stop()
        api.stop()


def register(world: GitHubWorld, name: str = "ci-bot") -> None:
    world.client.github_app_set(name, APP_ID, INSTALLATION, private_key_pem().decode())


def test_a_private_repository_clones_with_the_apps_token_and_no_secret_is_left_anywhere(world: GitHubWorld) -> None:
    client = world.client
    app = client.github_app_set("ci-bot", APP_ID, INSTALLATION, private_key_pem().decode())
    assert (app.name, app.app_id, app.installation_id) == ("ci-bot", APP_ID, INSTALLATION)
    result = client.git_clone(world.workspace, world.private_url, app="ci-bot")
    assert result.path == "/workspace/private"
    assert result.commit == world.commit
    [issued] = world.api.issued
    assert world.api.refusals == []
    read = client.exec(world.workspace, ["cat", "/workspace/private/README.md"])
    assert read.stdout == b"secret plans\n"
    origin = client.exec(world.workspace, ["git", "-C", "/workspace/private", "remote", "get-url", "origin"])
    assert origin.stdout.decode().strip() == world.private_url  # the plain URL

    # Nowhere in the workspace: every file of its filesystem, searched for the token.
    search = client.exec(
        world.workspace,
        [
            "sh",
            "-c",
            'for d in /*; do case $d in /proc|/sys|/dev) ;; *) grep -rlsF -D skip -- "$T" "$d";; esac; done; true',
        ],
        env={"T": issued.token},
        timeout_s=240,
    )
    assert search.stdout == b"", search.stdout

    # Nor in the runtime's log, the event stream, or the state log's files.
    pem_lines = [line for line in private_key_pem().decode().splitlines() if "-----" not in line]
    assert not any(issued.token in line for line in world.log)
    assert not any(line in logged for line in pem_lines for logged in world.log)
    seen = _drain(world.events)
    assert not any(issued.token.encode() in raw for raw in seen)
    assert not any(line.encode() in raw for line in pem_lines for raw in seen)
    state = world.runtime.settings.state_dir / "state"
    for path in state.iterdir():
        data = path.read_bytes()
        assert issued.token.encode() not in data, path
        assert not any(line.encode() in data for line in pem_lines), path

    [used] = client.github_audit()
    assert (used.app, used.workspace_id, used.repo, used.outcome) == (
        "ci-bot",
        world.workspace,
        world.private_url,
        "ok",
    )
    assert used.error is None


def _drain(events: Subscriber) -> list[bytes]:
    """Every event received so far, re-encoded (their raw bytes as published)."""
    import msgspec

    from runtime.errors import Timeout

    raws = []
    while True:
        try:
            _, event = events.recv(0.5)
        except Timeout:
            return raws
        raws.append(msgspec.msgpack.encode(event))


def test_a_public_repository_clones_without_any_app_and_without_credentials(world: GitHubWorld) -> None:
    result = world.client.git_clone(world.workspace, world.public_url, path="pub", depth=1)
    assert result.path == "/workspace/pub" and len(result.commit) == 40
    assert set(world.git.seen) == {""}  # git never sent an Authorization header
    assert world.client.github_audit() == []  # no credential was used


def test_without_the_apps_token_the_private_repository_is_refused_clearly(world: GitHubWorld) -> None:
    with pytest.raises(BadRequest, match="refused the credentials"):
        world.client.git_clone(world.workspace, world.private_url)
    register(world)
    world.git.accepts = lambda token: False  # the API issues a token the repository does not accept
    with pytest.raises(BadRequest, match="refused the credentials") as refused:
        world.client.git_clone(world.workspace, world.private_url, app="ci-bot", path="again")
    [issued] = world.api.issued
    assert issued.token not in refused.value.message
    [used] = world.client.github_audit()
    assert used.outcome == "bad_request" and used.error is not None and issued.token not in used.error


def test_refs_paths_and_missing_repositories(world: GitHubWorld) -> None:
    register(world)
    client = world.client
    tagged = client.git_clone(world.workspace, world.private_url, app="ci-bot", ref="v1", path="at-tag")
    assert tagged.commit == world.commit
    pinned = client.git_clone(world.workspace, world.private_url, app="ci-bot", ref=world.commit, path="at-commit")
    assert pinned.commit == world.commit
    with pytest.raises(Conflict, match="already exists"):
        client.git_clone(world.workspace, world.private_url, app="ci-bot", path="at-tag")
    with pytest.raises(NotFound, match="the ref is not in"):
        client.git_clone(world.workspace, world.private_url, app="ci-bot", ref="no-such-branch", path="x")
    with pytest.raises(NotFound):
        client.git_clone(world.workspace, world.git.url("missing.git"), path="missing")
    with pytest.raises(BadRequest, match="outside /workspace"):
        client.git_clone(world.workspace, world.private_url, app="ci-bot", path="/etc/repo")
    with pytest.raises(NotFound, match="no GitHub App named 'ghost'"):
        client.git_clone(world.workspace, world.private_url, app="ghost", path="y")
    outcomes = [used.outcome for used in client.github_audit()]
    assert outcomes == ["ok", "ok", "conflict", "not_found", "not_found"]  # the App was used five times


def test_an_expiring_token_is_refreshed_and_a_fresh_one_is_reused(world: GitHubWorld) -> None:
    register(world)
    world.api.lifetime_s = 3600
    world.client.git_clone(world.workspace, world.private_url, app="ci-bot", path="one")
    world.client.git_clone(world.workspace, world.private_url, app="ci-bot", path="two")
    assert len(world.api.issued) == 1  # cached: an hour to live
    world.client.github_app_set("short", APP_ID, INSTALLATION, private_key_pem().decode())
    world.api.lifetime_s = 240  # under the 5 minutes a cached token must still have
    world.client.git_clone(world.workspace, world.private_url, app="short", path="three")
    world.client.git_clone(world.workspace, world.private_url, app="short", path="four")
    assert len(world.api.issued) == 3  # each use of the short-lived token asked for a new one


def test_rotation_keeps_every_credential_usable_and_the_old_key_no_longer_opens_them(
    world: GitHubWorld, tmp_path: Path
) -> None:
    register(world, "one")
    register(world, "two")
    assert world.client.github_key_rotate(NEW_KEY) == 2
    for name in ("one", "two"):
        assert world.client.git_clone(world.workspace, world.private_url, app=name, path=name).commit == world.commit
    assert [app.name for app in world.client.github_app_list()] == ["one", "two"]
    with pytest.raises(BadRequest, match="key is not valid"):
        world.client.github_key_rotate("not a key")
    world.client.github_app_delete("two")
    assert [app.name for app in world.client.github_app_list()] == ["one"]
    with pytest.raises(NotFound):
        world.client.github_app_delete("two")


def test_the_cli_reads_keys_from_files_or_stdin_never_argv(world: GitHubWorld, tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(private_key_pem())
    env = {
        **os.environ,
        "WORKSPACE_ZMQ_ENDPOINT": world.runtime.endpoint,
        "WORKSPACE_AUTH_TOKEN": world.runtime.token,
        "WORKSPACE_STATE_DIR": str(tmp_path / "elsewhere"),
    }

    def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "runtime.cli", *args], env=env, input=stdin, capture_output=True, timeout=300,
            check=False,
        )  # fmt: skip

    made = cli("github", "set", "cli-bot", "--app-id", str(APP_ID), "--installation-id", str(INSTALLATION),
               "--key-file", str(key_file))  # fmt: skip
    assert made.returncode == 0, made.stderr
    listed = cli("github", "ls")
    assert b"cli-bot" in listed.stdout and b"PRIVATE KEY" not in listed.stdout
    cloned = cli("git", "clone", world.workspace, world.private_url, "--app", "cli-bot", "--path", "by-cli")
    assert cloned.returncode == 0, cloned.stderr
    assert cloned.stdout.decode().split() == ["/workspace/by-cli", world.commit]
    rotated = cli("github", "rotate-key", "--key-file", "-", stdin=NEW_KEY.encode())
    assert rotated.returncode == 0 and b"set GITHUB_APP_ENCRYPTION_KEY" in rotated.stderr
    audit = cli("github", "audit")
    assert b"cli-bot" in audit.stdout and b"ok" in audit.stdout
    assert cli("github", "rm", "cli-bot").returncode == 0


def test_a_record_that_was_tampered_with_or_swapped_or_a_wrong_key_fails_closed(
    make_docker_runtime: MakeDockerRuntime, world: GitHubWorld
) -> None:
    register(world, "a")
    register(world, "b")
    statelog = world.runtime.context.statelog if world.runtime.context else None
    assert statelog is not None
    record_a = statelog.secret(PREFIX + "a")
    record_b = statelog.secret(PREFIX + "b")
    assert record_a is not None and record_b is not None
    from runtime.messages import GithubAppChanged

    statelog.put_secrets(GithubAppChanged(action="test"), {PREFIX + "b": record_a})  # a's record under b's name
    with pytest.raises(Conflict, match="belong to 'a': refused"):
        world.client.git_clone(world.workspace, world.private_url, app="b", path="swapped")
    tampered = bytearray(record_a)
    tampered[-5] ^= 0x01  # one bit of the ciphertext
    statelog.put_secrets(GithubAppChanged(action="test"), {PREFIX + "a": bytes(tampered)})
    with pytest.raises(Conflict, match="do not open with GITHUB_APP_ENCRYPTION_KEY"):
        world.client.git_clone(world.workspace, world.private_url, app="a", path="tampered")
    assert world.api.issued == []  # nothing was signed with a key that did not open


def test_without_an_encryption_key_apps_are_refused_and_everything_else_works(
    make_docker_runtime: MakeDockerRuntime, world: GitHubWorld, tmp_path: Path
) -> None:
    runtime = make_docker_runtime(runtimes=("runc",), github_api_url=world.api.url, state_dir=tmp_path / "keyless")
    with runtime.client(timeout_s=300) as client:
        with pytest.raises(Conflict, match="set GITHUB_APP_ENCRYPTION_KEY"):
            client.github_app_set("x", APP_ID, INSTALLATION, private_key_pem().decode())
        assert client.github_app_list() == []
        ws = client.create()
        try:
            assert client.git_clone(ws.id, world.public_url).commit
            with pytest.raises(Conflict, match="set GITHUB_APP_ENCRYPTION_KEY"):
                client.git_clone(ws.id, world.private_url, app="x", path="p")
        finally:
            client.destroy(ws.id)


def test_invalid_registrations_are_refused_without_echoing_the_key(world: GitHubWorld) -> None:
    with pytest.raises(BadRequest, match="private_key is not a PEM private key") as refused:
        world.client.github_app_set("x", APP_ID, INSTALLATION, "hunter2")
    assert "hunter2" not in refused.value.message
    with pytest.raises(BadRequest, match="app_id=0 must be a positive integer"):
        world.client.github_app_set("x", 0, INSTALLATION, private_key_pem().decode())
    with pytest.raises(BadRequest, match="is not a valid name"):
        world.client.github_app_set("no spaces", APP_ID, INSTALLATION, private_key_pem().decode())
