"""``workspaces github`` and ``workspaces git``: arguments parsed, keys read from files or stdin only."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import github as cli_github
from runtime.cli.main import _parser
from runtime.errors import ConfigError
from runtime.messages import CloneResult, GithubApp, GithubCredentialUsed


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return {
                "github_app_set": GithubApp(name="bot", app_id=1, installation_id=2, created_at=0.0),
                "github_app_list": [GithubApp(name="bot", app_id=1, installation_id=2, created_at=0.0)],
                "github_key_rotate": 3,
                "github_audit": [
                    GithubCredentialUsed(
                        seq=9, ts=0.0, app="bot", workspace_id="ws_1", repo="r", outcome="bad_request", error="refused"
                    )
                ],
                "git_clone": CloneResult(path="/workspace/hello", commit="c0ffee"),
            }.get(name)

        return call


def run(argv: list[str], stdin: str = "") -> tuple[RecordingClient, int]:
    args = _parser().parse_args(argv)
    client = RecordingClient()
    command = cli_github.github if args.command == "github" else cli_github.git
    pytest.MonkeyPatch().setattr("sys.stdin", io.StringIO(stdin))
    return client, command(client, args)  # type: ignore[arg-type]


def test_a_private_key_is_read_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    client, status = run(["github", "set", "bot", "--app-id", "1", "--installation-id", "2", "--key-file", str(key)])
    assert status == 0 and capsys.readouterr().out == "bot\n"
    assert client.calls == [("github_app_set", ("bot", 1, 2, key.read_text()), {})]


def test_a_private_key_is_read_from_stdin_and_never_taken_from_argv() -> None:
    client, _ = run(["github", "set", "bot", "--app-id", "1", "--installation-id", "2", "--key-file", "-"],
                    stdin="-----BEGIN PRIVATE KEY-----\nBBBB\n")  # fmt: skip
    assert client.calls[0][1][3].startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(SystemExit):
        _parser().parse_args(["github", "set", "bot", "--app-id", "1", "--installation-id", "2", "--key", "x"])


def test_a_missing_or_empty_key_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the private key from .*missing\.pem"):
        run(
            [
                "github",
                "set",
                "b",
                "--app-id",
                "1",
                "--installation-id",
                "2",
                "--key-file",
                str(tmp_path / "missing.pem"),
            ]
        )
    empty = tmp_path / "empty.pem"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"the private key from .* is empty"):
        run(["github", "set", "b", "--app-id", "1", "--installation-id", "2", "--key-file", str(empty)])
    with pytest.raises(ConfigError, match="the new key from - is empty"):
        run(["github", "rotate-key", "--key-file", "-"], stdin="  \n")


def test_rotation_sends_the_new_key_stripped_and_reminds_the_operator(capsys: pytest.CaptureFixture[str]) -> None:
    client, _ = run(["github", "rotate-key", "--key-file", "-"], stdin=("ab" * 32) + "\n")
    assert client.calls == [("github_key_rotate", ("ab" * 32,), {})]
    assert "re-encrypted 3 GitHub App key(s): set GITHUB_APP_ENCRYPTION_KEY" in capsys.readouterr().err


def test_listing_and_audit_print_tables(capsys: pytest.CaptureFixture[str]) -> None:
    run(["github", "ls"])
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["NAME", "APP", "ID", "INSTALLATION", "REGISTERED"] and listed[1].startswith("bot")
    client, _ = run(["github", "audit", "--after", "4", "--limit", "2"])
    assert client.calls == [("github_audit", (), {"after": 4, "limit": 2})]
    audit = capsys.readouterr().out.splitlines()
    assert "bad_request: refused" in audit[1] and audit[1].startswith("9")


def test_git_clone_passes_every_option_and_prints_path_and_commit(capsys: pytest.CaptureFixture[str]) -> None:
    client, _ = run(["git", "clone", "ws_1", "octo/hello", "--app", "bot", "--ref", "main", "--path", "src",
                     "--depth", "1"])  # fmt: skip
    assert client.calls == [("git_clone", ("ws_1", "octo/hello"), {"app": "bot", "ref": "main", "path": "src",
                                                                    "depth": 1})]  # fmt: skip
    assert capsys.readouterr().out == "/workspace/hello c0ffee\n"
