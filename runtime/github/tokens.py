"""Installation tokens: an App JWT (RS256) exchanged at the GitHub API, kept in memory only.

The JWT is signed here with the App's private key (``iat`` 60 s in the past against
clock drift, ``exp`` 9 minutes ahead: GitHub allows at most 10, ``iss`` the App's id)
and exchanged at ``POST {GITHUB_API_URL}/app/installations/{id}/access_tokens``. The
installation token is cached in this process's memory until 5 minutes before its
``expires_at`` and never written anywhere: not to the state log, not to a log line, an
event or an error message.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from runtime.errors import BadRequest, NotFound, ProviderUnavailable, Timeout, WorkspaceError
from runtime.github.store import CredentialStore, load_private_key
from runtime.version import __version__

__all__ = ["REFRESH_BEFORE_S", "InstallationToken", "TokenBroker", "app_jwt"]

log = logging.getLogger(__name__)

REFRESH_BEFORE_S = 300.0
"""A cached token is replaced this long before it expires."""
_BACKDATE_S = 60
_LIFETIME_S = 540
_TIMEOUT_S = 30.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: int, private_key_pem: bytes, now: float) -> str:
    """The App's JWT: RS256 over ``{"iat", "exp", "iss"}``, valid from 60 s ago for 9 minutes."""
    key = load_private_key(private_key_pem, check=False)  # checked at registration; sealed since
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": int(now) - _BACKDATE_S, "exp": int(now) - _BACKDATE_S + _LIFETIME_S, "iss": str(app_id)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


class InstallationToken(msgspec.Struct, frozen=True):
    """A token and when it stops working (seconds since the epoch)."""

    token: str
    expires_at: float

    def __repr__(self) -> str:  # never show the token, even in a traceback
        return f"InstallationToken(expires_at={self.expires_at})"


class TokenBroker:
    """Installation tokens for the stored Apps, exchanged on demand and cached; thread-safe.

    Args:
        api_url: ``GITHUB_API_URL``.
        store: The Apps and their keys.
        clock: Seconds since the epoch (tests move it).
    """

    def __init__(self, api_url: str, store: CredentialStore, clock: Callable[[], float] = time.time) -> None:
        self.api_url = api_url.rstrip("/")
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, int, float], InstallationToken] = {}

    def token(self, name: str) -> str:
        """A token for the App ``name`` with at least 5 minutes to live.

        Raises:
            WorkspaceError: The App is unknown or its record does not open, or GitHub
                refused or could not be reached (see ``_exchange``).
        """
        app, pem = self._store.open(name)
        key = (app.name, app.app_id, app.installation_id, app.created_at)  # a re-registered App starts afresh
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.expires_at - REFRESH_BEFORE_S > self._clock():
            return cached.token
        fresh = self._exchange(name, app.app_id, app.installation_id, pem)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != name}
            self._cache[key] = fresh
        log.info("GitHub App %s: a new installation token (expires %s)", name, _iso(fresh.expires_at))
        return fresh.token

    def _exchange(self, name: str, app_id: int, installation_id: int, pem: bytes) -> InstallationToken:
        url = f"{self.api_url}/app/installations/{installation_id}/access_tokens"
        request = urllib.request.Request(url, data=b"", method="POST")
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("Authorization", f"Bearer {app_jwt(app_id, pem, self._clock())}")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        request.add_header("User-Agent", f"agent-workspaces/{__version__}")
        what = f"GitHub App {name} (app_id {app_id}, installation {installation_id}) at {self.api_url}"
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _refusal(exc.code, _message(exc), what) from None
        except TimeoutError:
            raise Timeout(f"{what}: GitHub did not answer within {_TIMEOUT_S:g} s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ProviderUnavailable(f"{what}: the GitHub API is not reachable: {reason}") from None
        except ValueError:
            raise ProviderUnavailable(f"{what}: the GitHub API answered something that is not JSON") from None
        try:
            return InstallationToken(str(body["token"]), _parse_time(str(body["expires_at"])))
        except (KeyError, TypeError, ValueError):
            raise ProviderUnavailable(f"{what}: the GitHub API's answer has no token and expiry") from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        body: Any = json.loads(error.read() or b"{}")
    except (ValueError, OSError):
        return str(error.reason)
    return str(body.get("message", error.reason)) if isinstance(body, dict) else str(error.reason)


def _refusal(status: int, message: str, what: str) -> WorkspaceError:
    if status == 401:
        return BadRequest(f"{what}: GitHub rejected the App's JWT ({message}): check app_id and private_key")
    if status == 404:
        return NotFound(f"{what}: GitHub knows no such installation of this App ({message})")
    if status in (403, 422):
        return BadRequest(f"{what}: GitHub refused the token ({status}: {message})")
    return ProviderUnavailable(f"{what}: GitHub answered {status}: {message}", retryable=status >= 500 or status == 429)


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
