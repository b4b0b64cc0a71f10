"""``workspaces github ...`` and ``workspaces git clone``: GitHub Apps from the command line.

A private key (or a new encryption key) is read from a file or standard input, never
from the command line, where it would be in the shell's history and ``ps``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runtime.cli.tables import age, print_json, table
from runtime.errors import ConfigError
from runtime.wire import Client

__all__ = ["add_parsers", "git", "github"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``github`` and ``git`` subcommands."""
    github_parser = commands.add_parser("github", help="GitHub App credentials: set, ls, rm, rotate-key, audit")
    actions = github_parser.add_subparsers(dest="action", required=True)
    # No abbreviations: `--key x` must not pass for `--key-file x` (and no option takes the key itself).
    set_app = actions.add_parser("set", help="register (or replace) a GitHub App", allow_abbrev=False)
    set_app.add_argument("name")
    set_app.add_argument("--app-id", type=int, required=True)
    set_app.add_argument("--installation-id", type=int, required=True)
    set_app.add_argument("--key-file", required=True, metavar="PATH|-", help="the App's private key (PEM); - for stdin")
    set_app.add_argument("--json", action="store_true")
    listing = actions.add_parser("ls", help="the registered Apps (never their keys)")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("rm", help="forget an App and its key")
    remove.add_argument("name")
    rotate = actions.add_parser(
        "rotate-key", help="re-encrypt every App's key under a new GITHUB_APP_ENCRYPTION_KEY", allow_abbrev=False
    )
    rotate.add_argument("--key-file", required=True, metavar="PATH|-", help="the new key (hex or base64); - for stdin")
    audit = actions.add_parser("audit", help="every use of a credential, oldest first")
    audit.add_argument("--after", type=int, default=0, metavar="SEQ")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true")

    git_parser = commands.add_parser("git", help="git in a workspace")
    git_actions = git_parser.add_subparsers(dest="action", required=True)
    clone = git_actions.add_parser("clone", help="clone a repository into a workspace")
    clone.add_argument("workspace_id")
    clone.add_argument("repo", help="owner/name or an http(s) URL")
    clone.add_argument("--app", help="the GitHub App whose credentials the clone uses (none: a public repository)")
    clone.add_argument("--ref", help="a branch, tag or commit")
    clone.add_argument("--path", help="where under /workspace (default: the repository's name)")
    clone.add_argument("--depth", type=int)
    clone.add_argument("--json", action="store_true")


def _secret(source: str, what: str) -> str:
    text = sys.stdin.read() if source == "-" else _read(Path(source), what)
    if not text.strip():
        raise ConfigError(f"{what} from {source} is empty")
    return text


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} from {path}: {exc.strerror}") from None


def github(client: Client, args: argparse.Namespace) -> int:
    """``workspaces github ACTION``."""
    if args.action == "set":
        pem = _secret(args.key_file, "the private key")
        app = client.github_app_set(args.name, args.app_id, args.installation_id, pem)
        if args.json:
            print_json(app)
        else:
            print(app.name)
    elif args.action == "ls":
        apps = client.github_app_list()
        if args.json:
            print_json(apps)
        else:
            now = time.time()
            rows = [["NAME", "APP ID", "INSTALLATION", "REGISTERED"]]
            rows += [[a.name, str(a.app_id), str(a.installation_id), age(a.created_at, now)] for a in apps]
            print(table(rows))
    elif args.action == "rm":
        client.github_app_delete(args.name)
        print(args.name)
    elif args.action == "rotate-key":
        count = client.github_key_rotate(_secret(args.key_file, "the new key").strip())
        print(f"re-encrypted {count} GitHub App key(s): set GITHUB_APP_ENCRYPTION_KEY to the new key "
              "before the runtime's next start", file=sys.stderr)  # fmt: skip
    else:
        used = client.github_audit(after=args.after, limit=args.limit)
        if args.json:
            print_json(used)
        else:
            rows = [["SEQ", "WHEN", "APP", "WORKSPACE", "REPO", "OUTCOME"]]
            rows += [
                [str(u.seq), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(u.ts)), u.app, u.workspace_id, u.repo,
                 u.outcome if u.error is None else f"{u.outcome}: {u.error}"]
                for u in used
            ]  # fmt: skip
            print(table(rows))
    return 0


def git(client: Client, args: argparse.Namespace) -> int:
    """``workspaces git clone``."""
    result = client.git_clone(
        args.workspace_id, args.repo, app=args.app, ref=args.ref, path=args.path, depth=args.depth
    )
    if args.json:
        print_json(result)
    else:
        print(f"{result.path} {result.commit}")
    return 0
