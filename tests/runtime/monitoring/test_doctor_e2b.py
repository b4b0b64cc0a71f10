"""``workspaces doctor``'s E2B checks: the key, DNS + TCP + TLS reach of the API, the key accepted."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.config import Settings
from runtime.monitoring.checks import Check
from runtime.monitoring.doctor_e2b import e2b_checks, e2b_in_use
from tests.conftest import MakeSettings
from tests.e2b_standin import ControlPlane


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_the_checks_run_only_when_e2b_is_in_use(make_settings: MakeSettings) -> None:
    assert not e2b_in_use(make_settings())
    assert e2b_in_use(make_settings(default_provider="e2b"))
    assert e2b_in_use(make_settings(fallback_providers=("e2b",)))
    assert e2b_in_use(make_settings(e2b_api_key="e2b_x"))


def test_a_missing_key_fails_with_the_fix_and_the_key_is_not_tried(make_settings: MakeSettings) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    checks = by_name(e2b_checks(make_settings(default_provider="e2b", e2b_api_url=f"http://127.0.0.1:{port}")))
    assert checks["e2b api key"].status == "FAIL" and "E2B_API_KEY" in checks["e2b api key"].fix
    assert checks["e2b reachable"].status == "FAIL" and "cannot connect" in checks["e2b reachable"].detail
    assert "outbound HTTPS" in checks["e2b reachable"].fix
    assert "e2b api" not in checks


def test_a_name_that_does_not_resolve_fails_at_dns(make_settings: MakeSettings) -> None:
    settings = make_settings(e2b_api_key="e2b_x", e2b_api_url="https://api.no-such-host.invalid")
    reach = by_name(e2b_checks(settings))["e2b reachable"]
    assert reach.status == "FAIL" and "(DNS)" in reach.detail and "api.no-such-host.invalid" in reach.detail


@pytest.mark.docker
def test_an_api_that_answers_and_accepts_the_key_passes_every_check(
    make_settings: MakeSettings, docker_client: object
) -> None:
    with ControlPlane() as plane:
        settings = make_settings(e2b_api_key=plane.api_key, e2b_api_url=plane.url)
        checks = by_name(e2b_checks(settings))
        assert [check.status for check in checks.values()] == ["PASS", "PASS", "PASS"]
        assert "accepted the key" in checks["e2b api"].detail
        wrong = by_name(e2b_checks(settings.replace(e2b_api_key="e2b_wrong")))["e2b api"]
        assert wrong.status == "FAIL" and "E2B rejected the API key" in wrong.detail


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[int]:
    """A TLS server on loopback whose certificate no CA signed; its port."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    continue  # the client refused our certificate, as it should

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(10)


def test_a_tls_certificate_nobody_trusts_fails_the_handshake(make_settings: MakeSettings, untrusted_tls: int) -> None:
    settings: Settings = make_settings(e2b_api_key="e2b_x", e2b_api_url=f"https://localhost:{untrusted_tls}")
    reach = by_name(e2b_checks(settings))["e2b reachable"]
    assert reach.status == "FAIL" and "TLS with localhost" in reach.detail
    assert "CERTIFICATE_VERIFY_FAILED" in reach.detail
