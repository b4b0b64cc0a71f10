"""The deployment guide's E2B requirements, as ``workspaces doctor`` checks.

Run when the ``e2b`` provider is in use (the default or a fallback provider, or
``E2B_API_KEY`` set):

1. ``E2B_API_KEY`` is set;
2. "Internet access from the server": the API's host resolves (DNS), and a TCP
   connection and, for ``https``, a verified TLS handshake with it succeed;
3. the key is accepted (the provider's own health check: one authenticated listing).
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

from runtime.config import Settings
from runtime.monitoring.checks import Check
from runtime.providers.e2b import e2b_in_use, e2b_provider

__all__ = ["e2b_checks", "e2b_in_use"]

_TIMEOUT_S = 5.0
_INTERNET_FIX = (
    "this host needs outbound HTTPS to {host}:{port} (the deployment guide's 'Internet access "
    "from the server'): allow it in the firewall or proxy, check /etc/resolv.conf, or set "
    "E2B_API_URL to an E2B-compatible API this host can reach"
)


def e2b_checks(settings: Settings) -> list[Check]:
    """The three checks, in order (a failed one skips the checks that depend on it)."""
    checks: list[Check] = []
    if settings.e2b_api_key:
        checks.append(Check("e2b api key", "PASS", "E2B_API_KEY is set"))
    else:
        fix = "set E2B_API_KEY to your team's key (https://e2b.dev/dashboard), or stop using the e2b provider"
        checks.append(Check("e2b api key", "FAIL", "E2B_API_KEY is not set: the e2b provider is unhealthy", fix))
    provider = e2b_provider(settings, "doctor")
    reach = _reach(provider.where)
    checks.append(reach)
    if settings.e2b_api_key and reach.status == "PASS":
        probe = provider.probe()
        if probe.healthy:
            checks.append(Check("e2b api", "PASS", probe.detail))
        else:
            checks.append(Check("e2b api", "FAIL", probe.detail, "check E2B_API_KEY (and E2B_DOMAIN / E2B_API_URL)"))
    return checks


def _reach(url: str) -> Check:
    """DNS, then TCP, then (for https) a verified TLS handshake with the API's host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    fix = _INTERNET_FIX.format(host=host, port=port)
    name = "e2b reachable"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return Check(name, "FAIL", f"cannot resolve {host} (DNS): {exc}", fix)
    address = addresses[0][4]
    try:
        with socket.create_connection((host, port), timeout=_TIMEOUT_S) as sock:
            if parts.scheme == "https":
                context = ssl.create_default_context()
                with context.wrap_socket(sock, server_hostname=host) as tls:
                    return Check(name, "PASS", f"{host}:{port} ({address[0]}) answers over {tls.version()}")
    except ssl.SSLError as exc:
        return Check(name, "FAIL", f"TLS with {host}:{port} failed: {exc.reason or exc}", fix)
    except OSError as exc:
        return Check(name, "FAIL", f"cannot connect to {host}:{port} ({address[0]}): {exc}", fix)
    return Check(name, "PASS", f"{host}:{port} ({address[0]}) accepts connections (plain HTTP)")
