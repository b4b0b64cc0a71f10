"""Clones as commands: the token reaches git through its environment alone; failures are worded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable
from runtime.github import GitHub, clone_url, redact, web_url
from runtime.github.clone import _failure
from runtime.messages import CloneResult, Command, ExecResult, GitCloneArgs, GithubCredentialUsed

TOKEN = "ghs_0123456789abcdefghijklmnopqrstuvwxyz"
COMMIT = "a" * 40


@dataclass
class Tokens:
    api_url: str = "https://api.github.com"
    asked: list[str] = field(default_factory=list)
    error: Exception | None = None

    def token(self, name: str) -> str:
        self.asked.append(name)
        if self.error is not None:
            raise self.error
        return TOKEN


@dataclass
class Shell:
    """Records commands; git answers from ``outcomes`` (by the command's second word), else success."""

    commands: list[Command] = field(default_factory=list)
    outcomes: dict[str, ExecResult] = field(default_factory=dict)

    def exec(self, handle: str, command: Command) -> ExecResult:
        assert handle == "h-1"
        self.commands.append(command)
        verb = next((word for word in command.argv[1:] if word in ("clone", "checkout", "rev-parse")), "")
        if verb in self.outcomes:
            return self.outcomes[verb]
        return ExecResult(exit_code=0, stdout=f"{COMMIT}\n".encode() if verb == "rev-parse" else b"", stderr=b"")


def failed(stderr: str, timed_out: bool = False) -> ExecResult:
    return ExecResult(exit_code=128, stdout=b"", stderr=stderr.encode(), timed_out=timed_out)


def github(tokens: Tokens | None = None) -> tuple[GitHub, list[GithubCredentialUsed]]:
    audit: list[GithubCredentialUsed] = []
    return GitHub(tokens or Tokens(), audit.append), audit  # type: ignore[arg-type]


def clone(hub: GitHub, shell: Shell, **args: Any) -> CloneResult:
    return hub.clone(shell, "h-1", "ws_1", GitCloneArgs(workspace_id="ws_1", **args))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://github.example.com/api/v3", "https://github.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_the_web_address_follows_the_api_address(api: str, web: str) -> None:
    assert web_url(api) == web
    assert clone_url("octo/hello", api) == f"{web}/octo/hello.git"
    assert clone_url("octo/hello.git", api) == f"{web}/octo/hello.git"
    assert clone_url("https://git.example.com/a/b", api) == "https://git.example.com/a/b"


def test_redaction_replaces_every_secret_and_ignores_none() -> None:
    assert redact(f"x {TOKEN} y {TOKEN}", TOKEN, None, "") == "x *** y ***"


def test_an_apps_token_reaches_git_through_its_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = Tokens()
    hub, audit = github(tokens)
    shell = Shell()
    result = clone(hub, shell, repo="octo/hello", app="bot")
    assert result == CloneResult(path="/workspace/hello", commit=COMMIT)
    assert tokens.asked == ["bot"]
    first = shell.commands[0]
    assert first.argv[:5] == ["git", "-c", "credential.helper=", "-c", first.argv[4]]  # the image's helpers reset
    assert first.argv[4].startswith("credential.helper=!") and TOKEN not in first.argv[4]
    assert first.argv[5:] == ["clone", "--quiet", "--", "https://github.com/octo/hello.git", "/workspace/hello"]
    assert first.env == {"GIT_TERMINAL_PROMPT": "0", "AW_GIT_TOKEN": TOKEN}
    assert all(TOKEN not in " ".join(command.argv) for command in shell.commands)
    assert [c.env for c in shell.commands[1:]] == [{}]  # rev-parse runs without it
    assert audit == [GithubCredentialUsed(app="bot", workspace_id="ws_1", repo="https://github.com/octo/hello.git",
                                          outcome="ok")]  # fmt: skip


def test_a_public_clone_asks_for_no_token_and_records_no_credential_use() -> None:
    tokens = Tokens()
    hub, audit = github(tokens)
    shell = Shell()
    clone(hub, shell, repo="https://git.example.com/team/tool.git", path="src/tool", depth=1, ref="release-2")
    [command, _] = shell.commands
    assert command.argv == ["git", "clone", "--quiet", "--depth", "1", "--branch", "release-2", "--",
                            "https://git.example.com/team/tool.git", "/workspace/src/tool"]  # fmt: skip
    assert command.env == {"GIT_TERMINAL_PROMPT": "0"}
    assert (tokens.asked, audit) == ([], [])


def test_a_commit_ref_is_checked_out_after_the_clone() -> None:
    hub, _ = github()
    shell = Shell()
    clone(hub, shell, repo="octo/hello", ref="abc1234")
    assert "--branch" not in shell.commands[0].argv
    assert shell.commands[1].argv == ["git", "-C", "/workspace/hello", "checkout", "--quiet", "--detach", "abc1234"]
    shell.outcomes["checkout"] = failed("error: pathspec 'abc1234' did not match any file(s) known to git")
    with pytest.raises(NotFound, match="the ref is not in"):
        clone(hub, shell, repo="octo/hello", ref="abc1234", path="again")


@pytest.mark.parametrize(
    ("stderr", "family", "words"),
    [
        (
            "fatal: destination path '/workspace/x' already exists and is not an empty directory.",
            Conflict,
            "already exists in the workspace",
        ),
        (
            "warning: Could not find remote branch nope to clone.\n"
            "fatal: Remote branch nope not found in upstream origin",
            NotFound,
            "the ref is not in",
        ),
        (
            "remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found",
            NotFound,
            "does not exist, or the credentials cannot see it",
        ),
        (
            f"fatal: Authentication failed for 'https://x-access-token:{TOKEN}@github.com/a/b.git/'",
            BadRequest,
            "refused the credentials",
        ),
        (
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            BadRequest,
            "refused the credentials",
        ),
        (
            "fatal: unable to access 'https://github.com/a/b.git/': Could not resolve host: github.com",
            ProviderUnavailable,
            "not reachable from the workspace",
        ),
        ("fatal: something else entirely", BadRequest, "git clone of .* failed: fatal: something else entirely"),
    ],
)
def test_gits_complaints_become_clear_errors_without_the_token(stderr: str, family: type, words: str) -> None:
    hub, audit = github()
    shell = Shell(outcomes={"clone": failed(stderr)})
    with pytest.raises(family, match=words) as refused:
        clone(hub, shell, repo="a/b", app="bot")
    assert TOKEN not in refused.value.message
    [used] = audit
    assert used.outcome == refused.value.code and used.error == refused.value.message


def test_a_clone_that_outlives_its_deadline_is_unavailable() -> None:
    hub, _ = github()
    with pytest.raises(ProviderUnavailable, match="did not finish within"):
        clone(hub, Shell(outcomes={"clone": failed("", timed_out=True)}), repo="a/b")


def test_a_token_that_cannot_be_had_is_audited_and_nothing_runs() -> None:
    tokens = Tokens(error=NotFound("no GitHub App named 'bot'"))
    hub, audit = github(tokens)
    shell = Shell()
    with pytest.raises(NotFound):
        clone(hub, shell, repo="a/b", app="bot")
    assert shell.commands == []
    assert [(used.app, used.outcome) for used in audit] == [("bot", "not_found")]


def test_the_failure_words_are_read_from_the_last_line_git_wrote() -> None:
    error = _failure("hint: one\nhint: two\nfatal: the real reason\n", "https://x/y.git", "/workspace/y")
    assert error.message.endswith("fatal: the real reason")
    assert isinstance(_failure("", "https://x/y.git", "/workspace/y"), BadRequest)
