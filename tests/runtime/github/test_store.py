"""The credential store on a real state log: sealed at rest, failing closed, rotated in one go."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runtime.errors import BadRequest, Conflict, NotFound
from runtime.github.store import PREFIX, CredentialStore
from runtime.messages import GithubAppChanged, GithubAppSetArgs, StoredGithubApp, decode_as, encode
from runtime.state import StateLog
from tests.github_standins import private_key_pem

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def statelog(tmp_path: Path) -> Iterator[StateLog]:
    log = StateLog(tmp_path / "state")
    yield log
    log.close()


def app(name: str = "ci-bot", pem: bytes | None = None) -> GithubAppSetArgs:
    return GithubAppSetArgs(name=name, app_id=12, installation_id=34, private_key=(pem or private_key_pem()).decode())


def test_an_app_is_registered_listed_and_opened_and_its_key_is_never_stored_in_clear(
    statelog: StateLog, tmp_path: Path
) -> None:
    store = CredentialStore(statelog, KEY)
    registered = store.set(app())
    assert (registered.name, registered.app_id, registered.installation_id) == ("ci-bot", 12, 34)
    assert store.list() == [registered]
    opened_app, pem = store.open("ci-bot")
    assert opened_app == registered
    assert pem.strip() == private_key_pem().strip()
    body_lines = [line for line in private_key_pem().splitlines() if b"-----" not in line]
    for path in (tmp_path / "state").iterdir():
        data = path.read_bytes()
        assert not any(line in data for line in body_lines), path
    [event] = [event for event in statelog.events() if isinstance(event, GithubAppChanged)]
    assert (event.action, event.app) == ("set", "ci-bot")


def test_each_record_has_its_own_random_nonce(statelog: StateLog) -> None:
    store = CredentialStore(statelog, KEY)
    store.set(app("one"))
    store.set(app("two"))
    records = {key: decode_as(raw, StoredGithubApp) for key, raw in statelog.secrets(PREFIX).items()}
    one, two = records[PREFIX + "one"], records[PREFIX + "two"]
    assert len(one.nonce) == 12 and one.nonce != two.nonce
    assert one.sealed != two.sealed  # the same key sealed twice differs


def test_registering_again_replaces_the_app(statelog: StateLog) -> None:
    store = CredentialStore(statelog, KEY)
    store.set(app())
    replaced = store.set(GithubAppSetArgs(name="ci-bot", app_id=99, installation_id=1,
                                          private_key=private_key_pem(seed=1).decode()))  # fmt: skip
    assert [a.app_id for a in store.list()] == [99]
    assert store.open("ci-bot")[0] == replaced


def test_a_key_that_is_not_an_rsa_private_key_is_refused_without_quoting_it(statelog: StateLog) -> None:
    store = CredentialStore(statelog, KEY)
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(BadRequest, match="not an RSA key: GitHub Apps sign their JWT with RS256"):
        store.set(app(pem=ec_key))
    broken = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(BadRequest, match="does not load as a PEM private key") as refused:
        store.set(app(pem=broken))
    assert "AAAA" not in refused.value.message
    assert store.list() == []


def test_without_a_key_nothing_is_stored_or_opened_and_listing_still_works(statelog: StateLog) -> None:
    CredentialStore(statelog, KEY).set(app())
    keyless = CredentialStore(statelog, None)
    assert not keyless.enabled
    with pytest.raises(Conflict, match="set GITHUB_APP_ENCRYPTION_KEY"):
        keyless.set(app("other"))
    with pytest.raises(Conflict, match="set GITHUB_APP_ENCRYPTION_KEY"):
        keyless.open("ci-bot")
    with pytest.raises(Conflict, match="set GITHUB_APP_ENCRYPTION_KEY"):
        keyless.open("missing-too")  # the key is the first thing missing
    assert [a.name for a in keyless.list()] == ["ci-bot"]
    assert "are stored but GITHUB_APP_ENCRYPTION_KEY is not set" in keyless.check()


def test_a_wrong_key_a_tampered_record_and_a_swapped_record_each_fail_closed(statelog: StateLog) -> None:
    store = CredentialStore(statelog, KEY)
    store.set(app("a"))
    store.set(app("b"))
    with pytest.raises(Conflict, match="'a' do not open with GITHUB_APP_ENCRYPTION_KEY"):
        CredentialStore(statelog, OTHER_KEY).open("a")
    assert "do not open" in CredentialStore(statelog, OTHER_KEY).check()
    assert store.check() == ""

    raw_a = statelog.secret(PREFIX + "a")
    assert raw_a is not None
    record = decode_as(raw_a, StoredGithubApp)
    flipped = bytearray(record.sealed)
    flipped[0] ^= 0x80
    tampered = StoredGithubApp(app=record.app, nonce=record.nonce, sealed=bytes(flipped))
    statelog.put_secrets(GithubAppChanged(action="test"), {PREFIX + "a": encode(tampered)})
    with pytest.raises(Conflict, match="or the record was altered"):
        store.open("a")

    statelog.put_secrets(GithubAppChanged(action="test"), {PREFIX + "b": raw_a})  # a's record under b's name
    with pytest.raises(Conflict, match="of GitHub App 'b' belong to 'a': refused"):
        store.open("b")

    raw_renamed = encode(StoredGithubApp(app=record.app.__class__(name="b", app_id=12, installation_id=34,
                                                                  created_at=1.0),
                                         nonce=record.nonce, sealed=record.sealed))  # fmt: skip
    statelog.put_secrets(GithubAppChanged(action="test"), {PREFIX + "b": raw_renamed})
    with pytest.raises(Conflict, match="do not open"):  # the name is bound in as associated data
        store.open("b")


def test_deleting_forgets_the_app_and_an_unknown_app_is_not_found(statelog: StateLog) -> None:
    store = CredentialStore(statelog, KEY)
    store.set(app())
    store.delete("ci-bot")
    assert store.list() == []
    with pytest.raises(NotFound, match="no GitHub App named 'ci-bot'"):
        store.open("ci-bot")
    with pytest.raises(NotFound):
        store.delete("ci-bot")
    actions = [event.action for event in statelog.events() if isinstance(event, GithubAppChanged)]
    assert actions == ["set", "deleted"]


def test_rotation_reseals_every_record_in_one_transaction_and_the_old_key_stops_working(
    statelog: StateLog,
) -> None:
    store = CredentialStore(statelog, KEY)
    for name in ("one", "two", "three"):
        store.set(app(name))
    before = statelog.secrets(PREFIX)
    seq = statelog.last_seq
    assert store.rotate(OTHER_KEY) == 3
    assert statelog.last_seq == seq + 1  # one change: one transaction, one event
    after = statelog.secrets(PREFIX)
    assert set(after) == set(before) and all(after[key] != before[key] for key in before)
    for name in ("one", "two", "three"):
        assert store.open(name)[1].strip() == private_key_pem().strip()
        assert CredentialStore(statelog, OTHER_KEY).open(name)[0].name == name
        with pytest.raises(Conflict):
            CredentialStore(statelog, KEY).open(name)


def test_a_rotation_that_meets_a_record_it_cannot_open_changes_nothing(statelog: StateLog) -> None:
    store = CredentialStore(statelog, KEY)
    store.set(app("good"))
    CredentialStore(statelog, OTHER_KEY).set(app("sealed-elsewhere"))
    before = statelog.secrets(PREFIX)
    with pytest.raises(Conflict, match="'sealed-elsewhere' do not open"):
        store.rotate(bytes(32))
    assert statelog.secrets(PREFIX) == before
    assert store.open("good")[0].name == "good"  # still on the old key


def test_the_set_arguments_never_show_the_key_in_their_repr() -> None:
    args = app()
    assert "PRIVATE" not in repr(args) and "ci-bot" in repr(args)
