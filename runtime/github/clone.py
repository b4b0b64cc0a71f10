"""``git_clone``: a repository cloned inside a workspace, its token handed to git alone.

The clone runs in the workspace (through its agent, like any command). With an App, its
installation token reaches that one git process through the command's environment and
a credential helper given on git's command line, which prints it when git asks: the
token is never in the remote URL, ``.git/config``, a file in the workspace, a process's
argv or a shell history, and the helpers the image may configure (a ``store`` helper
would write it to disk) are reset for that process. ``origin`` is the plain URL.
Failures carry git's own message with every secret replaced by ``***``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from runtime.agent import files
from runtime.errors import BadRequest, Conflict, NotFound, ProviderUnavailable, WorkspaceError
from runtime.github.tokens import TokenBroker
from runtime.messages import CloneResult, Command, GitCloneArgs, GithubCredentialUsed
from runtime.providers.base import Commands

__all__ = ["GitHub", "clone_url", "redact", "web_url"]

_TOKEN_ENV = "AW_GIT_TOKEN"
_HELPER = f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; echo "password=${_TOKEN_ENV}"; }}; f'
_CLONE_TIMEOUT_S = 900.0
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")


def web_url(api_url: str) -> str:
    """The web (and git) address of the GitHub behind ``api_url``.

    ``https://api.github.com`` serves ``https://github.com``; GitHub Enterprise's
    ``https://HOST/api/v3`` serves ``https://HOST``; anything else is its own host.
    """
    parts = urlsplit(api_url)
    host = parts.netloc.removeprefix("api.") if parts.netloc.startswith("api.") else parts.netloc
    return f"{parts.scheme}://{host}"


def clone_url(repo: str, api_url: str) -> str:
    """The URL to clone: ``repo`` when it is one, ``{web}/owner/name.git`` for ``owner/name``."""
    if "://" in repo:
        return repo
    return f"{web_url(api_url)}/{repo.removesuffix('.git')}.git"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _failure(stderr: str, url: str, target: str) -> WorkspaceError:
    """The error family for git's complaint (already redacted)."""
    lowered = stderr.lower()
    said = stderr.strip().splitlines()[-1] if stderr.strip() else "git failed"
    if "already exists and is not an empty directory" in lowered:
        return Conflict(f"{target} already exists in the workspace and is not empty: choose another path")
    if ("remote branch" in lowered and "not found" in lowered) or "did not match any" in lowered:
        return NotFound(f"the ref is not in {url}: {said}")
    if "not found" in lowered and ("repository" in lowered or "404" in lowered):
        return NotFound(f"{url} does not exist, or the credentials cannot see it: {said}")
    if "authentication failed" in lowered or "could not read username" in lowered or "403" in lowered:
        return BadRequest(f"{url} refused the credentials: {said}")
    if "could not resolve host" in lowered or "failed to connect" in lowered or "timed out" in lowered:
        return ProviderUnavailable(f"{url} is not reachable from the workspace: {said}")
    return BadRequest(f"git clone of {url} failed: {said}")


class GitHub:
    """Clones with or without an App's credentials, and the audit trail of their use.

    Args:
        tokens: Installation tokens of the stored Apps.
        audit: Records one use of a credential (published and kept in the state log).
    """

    def __init__(self, tokens: TokenBroker, audit: Callable[[GithubCredentialUsed], object]) -> None:
        self.tokens = tokens
        self._audit = audit

    def clone(self, commands: Commands, handle: str, workspace_id: str, args: GitCloneArgs) -> CloneResult:
        """Clone ``args.repo`` into the workspace; return where it went and its commit."""
        url = clone_url(args.repo, self.tokens.api_url)
        token: str | None = None
        try:
            token = self.tokens.token(args.app) if args.app else None
            result = self._clone(commands, handle, url, args, token)
        except WorkspaceError as exc:
            error = type(exc)(redact(exc.message, token), retryable=exc.retryable)
            if args.app:
                self._audit(GithubCredentialUsed(app=args.app, workspace_id=workspace_id, repo=url,
                                                 outcome=error.code, error=error.message))  # fmt: skip
            raise error from None
        if args.app:
            self._audit(GithubCredentialUsed(app=args.app, workspace_id=workspace_id, repo=url, outcome="ok"))
        return result

    @staticmethod
    def _clone(commands: Commands, handle: str, url: str, args: GitCloneArgs, token: str | None) -> CloneResult:
        name = posixpath.basename(urlsplit(url).path.rstrip("/")).removesuffix(".git") or "repository"
        target = files.workspace_path(args.path or name)
        env = {"GIT_TERMINAL_PROMPT": "0"}
        argv = ["git"]
        if token is not None:
            argv += ["-c", "credential.helper=", "-c", f"credential.helper={_HELPER}"]
            env[_TOKEN_ENV] = token
        argv += ["clone", "--quiet"]
        commit_ref = args.ref is not None and _SHA.fullmatch(args.ref) is not None
        if args.depth is not None:
            argv += ["--depth", str(args.depth)]
        if args.ref is not None and not commit_ref:
            argv += ["--branch", args.ref]
        argv += ["--", url, target]
        done = commands.exec(handle, Command(argv=argv, env=env, timeout_s=_CLONE_TIMEOUT_S))
        if done.exit_code != 0:
            stderr = redact(done.stderr.decode(errors="replace"), token)
            if done.timed_out:
                raise ProviderUnavailable(f"git clone of {url} did not finish within {_CLONE_TIMEOUT_S:g} s")
            raise _failure(stderr, url, target)
        if commit_ref:
            checkout = ["git", "-C", target, "checkout", "--quiet", "--detach", str(args.ref)]
            done = commands.exec(handle, Command(argv=checkout, timeout_s=60.0))
            if done.exit_code != 0:
                raise NotFound(f"the ref is not in {url}: {done.stderr.decode(errors='replace').strip()}")
        head = commands.exec(handle, Command(argv=["git", "-C", target, "rev-parse", "HEAD"], timeout_s=60.0))
        if head.exit_code != 0:
            raise BadRequest(f"the clone of {url} has no commit: {head.stderr.decode(errors='replace').strip()}")
        return CloneResult(path=target, commit=head.stdout.decode().strip())
