"""The shared token: from the environment, or a private file generated once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.config import Settings, load_settings
from runtime.errors import BadRequest, ConfigError
from runtime.wire import auth
from runtime.wire.auth import load_or_create_token, read_token
from tests.conftest import MakeSettings

FROM_ENV = "env-token-0123456789abcdef"


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    """Settings without a token in the environment: the token file decides."""
    return make_settings(auth_token=None)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_token_file(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_a_token_from_the_environment_wins_and_no_file_is_made(make_settings: MakeSettings) -> None:
    settings = make_settings(auth_token=FROM_ENV)
    assert load_or_create_token(settings) == FROM_ENV
    assert read_token(settings) == FROM_ENV
    assert not settings.token_file.exists()


def test_a_token_from_the_environment_wins_over_an_existing_file(make_settings: MakeSettings) -> None:
    settings = make_settings(auth_token=FROM_ENV)
    write_token_file(settings.token_file, "file-token-0123456789abcdef\n", 0o600)
    assert load_or_create_token(settings) == FROM_ENV
    assert read_token(settings) == FROM_ENV


def test_the_environment_variable_reaches_the_settings(tmp_path: Path) -> None:
    settings = load_settings(env={"WORKSPACE_AUTH_TOKEN": FROM_ENV, "WORKSPACE_STATE_DIR": str(tmp_path)})
    assert load_or_create_token(settings) == FROM_ENV
    empty = load_settings(env={"WORKSPACE_AUTH_TOKEN": "", "WORKSPACE_STATE_DIR": str(tmp_path)})
    assert empty.auth_token is None  # empty means: use the file


def test_without_one_a_token_is_generated_into_a_private_file(settings: Settings) -> None:
    token = load_or_create_token(settings)
    assert len(token) >= 32
    assert token.strip() == token and " " not in token
    assert settings.token_file == settings.state_dir / "token"
    assert settings.token_file.read_text() == token + "\n"
    assert mode_of(settings.token_file) == 0o600
    assert mode_of(settings.state_dir) & 0o077 == 0  # the state dir it made is private too


def test_the_generated_token_is_reused_by_the_server_and_read_by_clients(settings: Settings) -> None:
    token = load_or_create_token(settings)
    assert load_or_create_token(settings) == token
    assert read_token(settings) == token
    assert settings.token_file.read_text() == token + "\n"  # not rewritten


def test_a_token_file_made_by_hand_is_used_without_its_surrounding_whitespace(settings: Settings) -> None:
    write_token_file(settings.token_file, "  hand-made-token-0123456789  \n\n", 0o600)
    assert load_or_create_token(settings) == "hand-made-token-0123456789"
    assert read_token(settings) == "hand-made-token-0123456789"


def test_a_read_only_token_file_is_accepted(settings: Settings) -> None:
    write_token_file(settings.token_file, "read-only-token-0123456789\n", 0o400)
    assert read_token(settings) == "read-only-token-0123456789"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o601])
def test_a_token_file_others_could_read_is_refused_naming_chmod(settings: Settings, mode: int) -> None:
    path = settings.token_file
    write_token_file(path, "leaky-token-0123456789abcdef\n", mode)
    expected = f"token file {path} has mode {mode:04o}: it must be private (run: chmod 600 {path})"
    for read in (load_or_create_token, read_token):
        with pytest.raises(ConfigError) as caught:
            read(settings)
        assert caught.value.message == expected
    assert mode_of(path) == mode  # refused, not repaired behind the operator's back


@pytest.mark.parametrize("text", ["", "\n", "short\n", "x" * 15, "   " + "y" * 15 + "   "])
def test_an_empty_or_too_short_token_file_is_refused(settings: Settings, text: str) -> None:
    path = settings.token_file
    write_token_file(path, text, 0o600)
    expected = f"token file {path} is empty or too short: delete it to have a new one generated"
    for read in (load_or_create_token, read_token):
        with pytest.raises(ConfigError) as caught:
            read(settings)
        assert caught.value.message == expected
    assert path.read_text() == text


def test_deleting_a_refused_token_file_has_a_new_one_generated(settings: Settings) -> None:
    write_token_file(settings.token_file, "short\n", 0o600)
    with pytest.raises(ConfigError):
        load_or_create_token(settings)
    settings.token_file.unlink()
    token = load_or_create_token(settings)
    assert token != "short" and len(token) >= 32


def test_a_client_without_a_token_file_is_told_how_to_get_one(settings: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        read_token(settings)
    assert caught.value.message == (
        f"no token: set WORKSPACE_AUTH_TOKEN or start the runtime once to create {settings.token_file}"
    )
    assert isinstance(caught.value, BadRequest)
    assert not settings.token_file.exists()  # a client never creates it


def test_a_token_file_that_cannot_be_read_is_a_config_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_token_file(settings.token_file, "locked-token-0123456789\n", 0o600)

    def denied(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    # The tests run as root, which reads any file: stand in for another user's file.
    monkeypatch.setattr(auth.Path, "read_text", denied)
    with pytest.raises(ConfigError) as caught:
        read_token(settings)
    assert caught.value.message == f"cannot read the token file {settings.token_file}: permission denied"


def test_the_generated_file_is_created_private_whatever_the_umask(settings: Settings) -> None:
    old = os.umask(0)
    try:
        load_or_create_token(settings)
    finally:
        os.umask(old)
    assert mode_of(settings.token_file) == 0o600


def test_runtimes_starting_at_once_agree_on_one_token_and_nobody_reads_a_half_written_file(
    settings: Settings,
) -> None:
    import threading

    start = threading.Barrier(8)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def load() -> None:
        start.wait()
        try:
            tokens.append(load_or_create_token(settings))
            tokens.append(read_token(settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(tokens)) == 1 and len(tokens) == 16
    assert [path.name for path in settings.token_file.parent.iterdir() if path.name.startswith(".token-")] == []
