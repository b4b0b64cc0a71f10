"""Local stand-ins for GitHub: the token endpoint of its API, and git over smart HTTP.

``FakeGithubApi`` plays ``POST /app/installations/{id}/access_tokens``: it checks the
App JWT's RS256 signature with the App's public key and its ``iat``/``exp``/``iss`` as
GitHub does, and answers an installation token with an expiry. ``GitServer`` serves
bare repositories with git's own ``git http-backend`` behind a small HTTP server and
lets a private repository be read only with a token the API issued (Basic auth, any
user name, the token as password, as GitHub does).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@cache
def private_key_pem(bits: int = 2048, seed: int = 0) -> bytes:
    """An RSA private key in PEM (PKCS#8), one per ``seed`` for this test run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, public_pem: bytes, now: float) -> dict[str, Any]:
    """The claims of an App JWT, checked as GitHub checks them; ``ValueError`` says what is wrong."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
    except ValueError:
        raise ValueError("not a JWT") from None
    header = json.loads(_unb64(header_b64))
    if header.get("alg") != "RS256":
        raise ValueError(f"alg {header.get('alg')!r} is not RS256")
    public = serialization.load_pem_public_key(public_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    try:
        public.verify(
            _unb64(signature_b64), f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise ValueError("the signature does not verify") from None
    claims: dict[str, Any] = json.loads(_unb64(payload_b64))
    if not claims["iat"] <= now + 1:
        raise ValueError("iat is in the future")
    if not claims["exp"] > now:
        raise ValueError("the JWT has expired")
    if claims["exp"] - claims["iat"] > 600:
        raise ValueError("the JWT lives longer than 10 minutes")
    return claims


@dataclass
class Issued:
    token: str
    expires_at: float
    installation_id: int


@dataclass
class FakeGithubApi:
    """The token endpoint; ``apps`` maps app ids to their public keys (PEM)."""

    host: str = "127.0.0.1"
    apps: dict[int, bytes] = field(default_factory=dict)
    installations: dict[int, int] = field(default_factory=dict)  # installation id -> app id
    lifetime_s: float = 3600.0
    issued: list[Issued] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    answer_status: int | None = None  # force an error status
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                match = re.fullmatch(r"/app/installations/(\d+)/access_tokens", self.path)
                if api.answer_status is not None:
                    return self._json(api.answer_status, {"message": "forced by the test"})
                if match is None:
                    return self._json(404, {"message": "Not Found"})
                installation = int(match.group(1))
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    return self._refuse("no bearer JWT")
                try:
                    claims = json.loads(_unb64(auth.removeprefix("Bearer ").split(".")[1]))
                    public = api.apps[int(claims["iss"])]
                    verify_jwt(auth.removeprefix("Bearer "), public, api.clock())
                except (ValueError, KeyError, IndexError) as exc:
                    return self._refuse(f"the JWT is not valid: {exc}")
                if api.installations.get(installation) != int(claims["iss"]):
                    return self._json(404, {"message": "Not Found"})
                issued = Issued(f"ghs_{secrets.token_hex(18)}", api.clock() + api.lifetime_s, installation)
                api.issued.append(issued)
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued.expires_at))
                return self._json(201, {"token": issued.token, "expires_at": expires})

            def _refuse(self, why: str) -> None:
                api.refusals.append(why)
                self._json(401, {"message": "A JSON web token could not be decoded"})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-github-api", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_port}"

    def valid(self, token: str) -> bool:
        """Whether this API issued ``token`` and it has not expired."""
        return any(issued.token == token and issued.expires_at > self.clock() for issued in self.issued)

    def register(self, app_id: int, installation_id: int, private_pem: bytes) -> None:
        key = serialization.load_pem_private_key(private_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.apps[app_id] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.installations[installation_id] = app_id

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@dataclass
class GitServer:
    """Bare repositories under ``root`` over smart HTTP; ``private`` ones need a valid token.

    ``accepts`` says whether a token may read them (e.g. the API issued it and it has not
    expired); every Authorization header seen is kept in ``seen`` for the test to inspect.
    """

    root: Path
    host: str = "127.0.0.1"
    private: set[str] = field(default_factory=set)
    accepts: Callable[[str], bool] = lambda token: False
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        git = self
        backend = subprocess.run(["git", "--exec-path"], capture_output=True, check=True, text=True).stdout.strip()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                repo = path.lstrip("/").split("/", 1)[0]
                auth = self.headers.get("Authorization", "")
                git.seen.append(auth)
                if repo in git.private and not git._allowed(auth):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="stand-in"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "GIT_PROJECT_ROOT": str(git.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_ADDR": self.client_address[0],
                    "PATH": "/usr/bin:/bin",
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                done = subprocess.run([f"{backend}/git-http-backend"], input=body, env=env, capture_output=True,
                                      check=False)  # fmt: skip
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.split(b"\r\n"):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-server", daemon=True)
        self._thread.start()

    def _allowed(self, auth: str) -> bool:
        if not auth.startswith("Basic "):
            return False
        _, _, password = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        return self.accepts(password)

    def url(self, repo: str) -> str:
        return f"http://{self.host}:{self._server.server_port}/{repo}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def make_repo(root: Path, name: str, files: dict[str, str], branch: str = "main") -> str:
    """A bare repository ``root/name`` with one commit of ``files`` on ``branch``; its commit id."""
    work = root / f".work-{name}"
    work.mkdir(parents=True)
    env = {**GIT_ENV, "PATH": "/usr/bin:/bin"}

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "--quiet", "--initial-branch", branch)
    for path, text in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git("add", "--all")
    git("commit", "--quiet", "-m", "first")
    git("tag", "v1")
    commit = git("rev-parse", "HEAD").strip()
    git("clone", "--quiet", "--bare", str(work), str(root / name), cwd=root)
    return commit
