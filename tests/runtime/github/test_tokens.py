"""Installation tokens: the App JWT as GitHub checks it, the exchange, the cache and its refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.errors import BadRequest, NotFound, ProviderUnavailable, WorkspaceError
from runtime.github.store import CredentialStore
from runtime.github.tokens import REFRESH_BEFORE_S, InstallationToken, TokenBroker, app_jwt
from runtime.messages import GithubAppSetArgs
from runtime.state import StateLog
from tests.github_standins import FakeGithubApi, _unb64, private_key_pem, verify_jwt
from tests.serving import free_port

APP_ID, INSTALLATION = 12, 34


def public_pem(private: bytes) -> bytes:
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_app_jwt_is_rs256_backdated_a_minute_and_short_lived() -> None:
    now = 1_700_000_000.0
    token = app_jwt(APP_ID, private_key_pem(), now)
    header = json.loads(_unb64(token.split(".")[0]))
    assert header == {"alg": "RS256", "typ": "JWT"}
    claims = verify_jwt(token, public_pem(private_key_pem()), now)
    assert claims == {"iat": int(now) - 60, "exp": int(now) + 480, "iss": str(APP_ID)}
    assert claims["exp"] - claims["iat"] <= 600
    with pytest.raises(ValueError, match="does not verify"):
        verify_jwt(token, public_pem(private_key_pem(seed=1)), now)
    with pytest.raises(ValueError, match="expired"):
        verify_jwt(token, public_pem(private_key_pem()), now + 600)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[FakeGithubApi]:
    server = FakeGithubApi()
    server.register(APP_ID, INSTALLATION, private_key_pem())
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CredentialStore]:
    statelog = StateLog(tmp_path / "state")
    credentials = CredentialStore(statelog, bytes(32))
    credentials.set(GithubAppSetArgs(name="bot", app_id=APP_ID, installation_id=INSTALLATION,
                                     private_key=private_key_pem().decode()))  # fmt: skip
    yield credentials
    statelog.close()


def test_a_token_is_exchanged_once_and_reused_while_it_has_more_than_five_minutes(
    api: FakeGithubApi, store: CredentialStore
) -> None:
    clock = Clock()
    api.clock = clock  # GitHub's clock and ours agree
    broker = TokenBroker(api.url + "/", store, clock=clock)
    assert broker.api_url == api.url
    first = broker.token("bot")
    assert [issued.token for issued in api.issued] == [first] and api.refusals == []
    assert broker.token("bot") == first
    clock.now = api.issued[0].expires_at - REFRESH_BEFORE_S - 1
    assert broker.token("bot") == first
    clock.now = api.issued[0].expires_at - REFRESH_BEFORE_S + 1  # less than five minutes left
    second = broker.token("bot")
    assert second != first and len(api.issued) == 2


def test_a_token_issued_with_less_than_five_minutes_is_replaced_at_every_use(
    api: FakeGithubApi, store: CredentialStore
) -> None:
    api.lifetime_s = 120
    broker = TokenBroker(api.url, store)
    assert broker.token("bot") != broker.token("bot")
    assert len(api.issued) == 2


def test_a_re_registered_app_gets_a_fresh_token(api: FakeGithubApi, store: CredentialStore) -> None:
    broker = TokenBroker(api.url, store)
    first = broker.token("bot")
    store.set(GithubAppSetArgs(name="bot", app_id=APP_ID, installation_id=INSTALLATION,
                               private_key=private_key_pem().decode()))  # fmt: skip
    assert broker.token("bot") != first


def test_github_refusals_are_clear_and_never_carry_a_secret(api: FakeGithubApi, store: CredentialStore) -> None:
    broker = TokenBroker(api.url, store)
    api.register(APP_ID, INSTALLATION, private_key_pem(seed=1))  # GitHub knows another key for the App
    with pytest.raises(BadRequest, match=r"GitHub rejected the App's JWT .*: check app_id and private_key") as bad:
        broker.token("bot")
    assert api.refusals == ["the JWT is not valid: the signature does not verify"]
    api.register(APP_ID, 999, private_key_pem())  # the right key, but installation 34 is gone
    api.installations.pop(INSTALLATION)
    with pytest.raises(NotFound, match="GitHub knows no such installation"):
        broker.token("bot")
    api.answer_status = 503
    with pytest.raises(ProviderUnavailable, match="GitHub answered 503") as busy:
        broker.token("bot")
    assert busy.value.retryable
    api.answer_status = 403
    with pytest.raises(BadRequest, match="GitHub refused the token"):
        broker.token("bot")
    for error in (bad.value, busy.value):
        assert "eyJ" not in error.message  # every JWT starts so (the base64 of the opening brace and quote)
    assert api.issued == []


def test_an_unreachable_api_is_unavailable_and_retryable(store: CredentialStore) -> None:
    broker = TokenBroker(f"http://127.0.0.1:{free_port()}", store)
    with pytest.raises(ProviderUnavailable, match="the GitHub API is not reachable") as unreachable:
        broker.token("bot")
    assert unreachable.value.retryable


def test_an_unknown_app_is_not_found_before_anything_is_sent(api: FakeGithubApi, store: CredentialStore) -> None:
    with pytest.raises(NotFound, match="no GitHub App named 'ghost'"):
        TokenBroker(api.url, store).token("ghost")
    assert api.issued == [] and api.refusals == []


def test_a_token_is_not_shown_by_its_repr() -> None:
    token = InstallationToken("ghs_secret", 5.0)
    assert "ghs_secret" not in repr(token) and "5.0" in repr(token)


def test_every_refusal_is_a_workspace_error(api: FakeGithubApi, store: CredentialStore) -> None:
    broker = TokenBroker(api.url, store)
    for status in (400, 401, 403, 404, 422, 429, 500, 502):
        api.answer_status = status
        with pytest.raises(WorkspaceError) as refused:
            broker.token("bot")
        assert str(status) in refused.value.message or status in (401, 404)
        assert refused.value.retryable is (status in (429, 500, 502))
