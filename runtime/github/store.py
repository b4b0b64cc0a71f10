"""GitHub App credentials at rest: AES-256-GCM under ``GITHUB_APP_ENCRYPTION_KEY``.

Each App is one record in the state log's ``secrets`` database. Its private key is
sealed with AES-256-GCM: a fresh random 12-byte nonce per record, and the record's name
as associated data, so a record copied under another name does not open. The key never
leaves this module in clear except to sign a JWT (``runtime.github.tokens``); records,
replies, events and logs carry only the App's name and ids. Opening fails closed: a
wrong key, a changed byte or a swapped record is a ``Conflict`` naming the App, never
garbage. ``rotate`` re-seals every record under a new key in one LMDB transaction.
"""

from __future__ import annotations

import os
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from runtime.errors import BadRequest, Conflict, NotFound
from runtime.messages import GithubApp, GithubAppChanged, GithubAppSetArgs, StoredGithubApp, decode_as, encode
from runtime.state.statelog import StateLog

__all__ = ["PREFIX", "CredentialStore", "load_private_key"]

PREFIX = "github_app:"
_NONCE_BYTES = 12
_NO_KEY = (
    "GitHub App credentials are off: set GITHUB_APP_ENCRYPTION_KEY (64 hex digits or the base64 of 32 bytes) "
    "and restart the runtime"
)


def load_private_key(pem: bytes, *, check: bool = True) -> RSAPrivateKey:
    """The RSA private key in ``pem``; ``BadRequest`` (never quoting it) if it is not one.

    ``check=False`` skips the RSA consistency checks (about 25 ms a key): for a key that
    was checked when it was registered and comes back from an authenticated record.
    """
    try:
        key = load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=not check)
    except (ValueError, TypeError):
        raise BadRequest("private_key does not load as a PEM private key without a passphrase") from None
    if not isinstance(key, RSAPrivateKey):
        raise BadRequest("private_key is not an RSA key: GitHub Apps sign their JWT with RS256")
    return key


class CredentialStore:
    """The registered GitHub Apps; thread-safe (reads from anywhere, writes serialised by the log).

    Args:
        statelog: Where records are kept.
        key: The 32-byte AES key (``GITHUB_APP_ENCRYPTION_KEY``); ``None``: credentials are off.
    """

    def __init__(self, statelog: StateLog, key: bytes | None) -> None:
        self._statelog = statelog
        self._lock = threading.Lock()
        self._aead = AESGCM(key) if key is not None else None

    @property
    def enabled(self) -> bool:
        """Whether an encryption key is configured."""
        return self._aead is not None

    def _sealer(self) -> AESGCM:
        with self._lock:
            if self._aead is None:
                raise Conflict(_NO_KEY)
            return self._aead

    # ------------------------------------------------------------------ reads

    def _record(self, name: str) -> StoredGithubApp:
        raw = self._statelog.secret(PREFIX + name)
        if raw is None:
            raise NotFound(f"no GitHub App named {name!r}: register it with github_app_set")
        stored: StoredGithubApp = decode_as(raw, StoredGithubApp)
        return stored

    def list(self) -> list[GithubApp]:
        """Every registered App, by name (their keys stay sealed)."""
        records = self._statelog.secrets(PREFIX)
        return [decode_as(raw, StoredGithubApp).app for _, raw in sorted(records.items())]

    def open(self, name: str) -> tuple[GithubApp, bytes]:
        """An App and its private key (PEM), unsealed.

        Raises:
            NotFound: No App of that name.
            Conflict: Credentials are off, or the record does not open (wrong key, altered
                or moved record).
        """
        aead = self._sealer()
        record = self._record(name)
        return record.app, _unseal(aead, name, record)

    def check(self) -> str:
        """Whether the configured key opens the stored records (for start-up and ``doctor``).

        Returns:
            An empty string when all is well (or there is nothing to check), else why not.
        """
        records = self._statelog.secrets(PREFIX)
        if not records:
            return ""
        if self._aead is None:
            return f"{len(records)} GitHub App(s) are stored but GITHUB_APP_ENCRYPTION_KEY is not set"
        for key, raw in records.items():
            try:
                _unseal(self._aead, key.removeprefix(PREFIX), decode_as(raw, StoredGithubApp))
            except Conflict as exc:
                return exc.message
        return ""

    # ------------------------------------------------------------------ writes

    def set(self, args: GithubAppSetArgs) -> GithubApp:
        """Register (or replace) an App; its key is checked, then stored only sealed."""
        pem = args.private_key.strip().encode() + b"\n"
        load_private_key(pem)
        aead = self._sealer()
        app = GithubApp(
            name=args.name, app_id=args.app_id, installation_id=args.installation_id, created_at=time.time()
        )
        record = _seal(aead, app, pem)
        self._statelog.put_secrets(GithubAppChanged(action="set", app=args.name), {PREFIX + args.name: encode(record)})
        return app

    def delete(self, name: str) -> None:
        """Forget an App and its key.

        Raises:
            NotFound: No App of that name.
        """
        self._record(name)
        self._statelog.put_secrets(GithubAppChanged(action="deleted", app=name), {PREFIX + name: None})

    def rotate(self, key: bytes) -> int:
        """Re-seal every record under ``key`` in one transaction, then use ``key``; return how many.

        Every record is opened first: if one does not open, nothing changes.
        """
        old, new = self._sealer(), AESGCM(key)
        resealed: dict[str, bytes | None] = {}
        for record_key, raw in self._statelog.secrets(PREFIX).items():
            record: StoredGithubApp = decode_as(raw, StoredGithubApp)
            pem = _unseal(old, record_key.removeprefix(PREFIX), record)
            resealed[record_key] = encode(_seal(new, record.app, pem))
        with self._lock:
            self._statelog.put_secrets(GithubAppChanged(action="rotated"), resealed)
            self._aead = new
        return len(resealed)


def _seal(aead: AESGCM, app: GithubApp, pem: bytes) -> StoredGithubApp:
    nonce = os.urandom(_NONCE_BYTES)
    return StoredGithubApp(app=app, nonce=nonce, sealed=aead.encrypt(nonce, pem, app.name.encode()))


def _unseal(aead: AESGCM, name: str, record: StoredGithubApp) -> bytes:
    if record.app.name != name:
        raise Conflict(f"the stored credentials of GitHub App {name!r} belong to {record.app.name!r}: refused")
    try:
        return aead.decrypt(record.nonce, record.sealed, name.encode())
    except (InvalidTag, ValueError):
        raise Conflict(
            f"the stored credentials of GitHub App {name!r} do not open with GITHUB_APP_ENCRYPTION_KEY: "
            "the key is not the one they were stored with, or the record was altered"
        ) from None
