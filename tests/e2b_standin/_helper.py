"""The file operations of envd, run as root inside a stand-in sandbox's container (``python3 -c``).

Sent whole by ``tests.e2b_standin.filesystem`` for each call, never imported: arguments
are ``OP USER PATH [ARG]``, a write's content comes on stdin, a read's goes to stdout,
other results are JSON on stdout. A failure exits 3 with ``{"code", "message"}`` on
stderr: an HTTP status for ``read``/``write`` (envd's ``/files`` API), a Connect code for
the rest (envd's filesystem service), with envd's messages. Standard library only.
"""

import grp
import json
import os
import pwd
import shutil
import stat
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["main"]

_HTTP_OPS = ("read", "write")


class Failure(Exception):
    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _resolve(path: str, user: pwd.struct_passwd) -> str:
    """envd's ExpandAndResolve: ~ and relative paths are under the user's home."""
    if path.startswith("~"):
        if len(path) > 1 and path[1] != "/":
            raise Failure("invalid_argument", f"failed to expand path '{path}': cannot expand user-specific home dir")
        path = os.path.join(user.pw_dir, path[1:].lstrip("/"))
    return os.path.normpath(os.path.join(user.pw_dir, path))


def _ensure_dirs(path: str, user: pwd.struct_passwd) -> None:
    """envd's EnsureDirs: create each missing directory (0755), owned by the user."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        if not os.path.exists(current):
            os.mkdir(current, 0o755)
            os.chown(current, user.pw_uid, user.pw_gid)
        elif not os.path.isdir(current):
            raise OSError(f"path is a file: {current}")


def _go_mode(mode: int) -> str:
    """Go's os.FileMode.String() of a stat mode, as envd reports ``permissions``."""
    flags = (
        ("d", stat.S_ISDIR(mode)),
        ("L", stat.S_ISLNK(mode)),
        ("D", stat.S_ISBLK(mode) or stat.S_ISCHR(mode)),
        ("p", stat.S_ISFIFO(mode)),
        ("S", stat.S_ISSOCK(mode)),
        ("u", mode & stat.S_ISUID),
        ("g", mode & stat.S_ISGID),
        ("c", stat.S_ISCHR(mode)),
        ("t", mode & stat.S_ISVTX),
    )
    head = "".join(letter for letter, on in flags if on) or "-"
    return head + "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


def _kind(mode: int) -> str:
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


def _name_of(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def _entry(path: str) -> dict[str, Any]:
    """envd's entryInfo: lstat, and for a symlink its resolved target's type and permissions."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise Failure("not_found", f"file not found: lstat {path}: no such file or directory") from None
    is_link = stat.S_ISLNK(info.st_mode)
    target, shown = None, info
    if is_link and os.path.exists(os.path.realpath(path)):
        target = os.path.realpath(path)
        shown = os.stat(target)
    broken = is_link and target is None
    return {
        "name": os.path.basename(path),
        "type": "other" if broken else _kind(shown.st_mode),
        "path": path,
        "size": info.st_size,
        "mode": stat.S_IMODE(shown.st_mode) & 0o777,
        "permissions": _go_mode(info.st_mode),
        "owner": _name_of(pwd.getpwuid, info.st_uid),
        "group": _name_of(grp.getgrgid, info.st_gid),
        "mtime_ns": info.st_mtime_ns,
        "symlink_target": target,
        "is_symlink": is_link,
    }


def _read(path: str) -> None:
    if not os.path.exists(path):
        raise Failure(404, f"path '{path}' does not exist")
    if os.path.isdir(path):
        raise Failure(400, f"path '{path}' is a directory")
    with open(path, "rb") as source:
        shutil.copyfileobj(source, sys.stdout.buffer)


def _write(path: str, user: pwd.struct_passwd) -> None:
    try:
        _ensure_dirs(os.path.dirname(path), user)
    except OSError as exc:
        raise Failure(500, f"error ensuring directories: {exc}") from None
    if os.path.isdir(path):
        raise Failure(400, f"path is a directory: {path}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    os.fchown(fd, user.pw_uid, user.pw_gid)
    with os.fdopen(fd, "wb") as target:
        shutil.copyfileobj(sys.stdin.buffer, target)
    print(json.dumps([{"name": os.path.basename(path), "type": "file", "path": path}]))


def _list(path: str, depth: int) -> None:
    resolved = os.path.realpath(path)
    if not os.path.exists(resolved):
        raise Failure("not_found", f"directory not found: lstat {path}: no such file or directory")
    if not os.path.isdir(resolved):
        raise Failure("invalid_argument", f"path is not a directory: {path}")
    found: list[dict[str, Any]] = []

    def walk(directory: str, level: int) -> None:
        for item in os.scandir(directory):
            found.append(_entry(item.path))
            if level < depth and item.is_dir(follow_symlinks=False):
                walk(item.path, level + 1)

    walk(path, 1)
    # envd's order: directories first, then by name, case-insensitively.
    found.sort(key=lambda entry: (entry["type"] != "dir", entry["name"].lower()))
    print(json.dumps(found))


def _make_dir(path: str, user: pwd.struct_passwd) -> None:
    if os.path.exists(path):
        if os.path.isdir(path):
            raise Failure("already_exists", f"directory already exists: {path}")
        raise Failure("invalid_argument", f"path already exists but it is not a directory: {path}")
    try:
        _ensure_dirs(path, user)
    except OSError as exc:
        raise Failure("internal", str(exc)) from None


def _remove(path: str) -> None:
    # envd's os.RemoveAll: a missing path is not an error.
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _rename(source: str, destination: str, user: pwd.struct_passwd) -> None:
    try:
        _ensure_dirs(os.path.dirname(destination), user)
        os.rename(source, destination)
    except OSError as exc:
        raise Failure("internal", f"error renaming: {exc}") from None
    print(json.dumps(_entry(destination)))


def _run(op: str, username: str, args: list[str]) -> None:
    try:
        user = pwd.getpwnam(username)
    except KeyError:
        message = f"error looking up user '{username}': user: unknown user {username}"
        raise Failure(401 if op in _HTTP_OPS else "unauthenticated", message) from None
    try:
        paths = [_resolve(arg, user) for arg in args[: 2 if op == "rename" else 1]]
    except Failure as failure:
        raise Failure(400 if op in _HTTP_OPS else failure.code, failure.message) from None
    if op == "read":
        _read(paths[0])
    elif op == "write":
        _write(paths[0], user)
    elif op == "stat":
        print(json.dumps(_entry(paths[0])))
    elif op == "list":
        _list(paths[0], int(args[1]))
    elif op == "mkdir":
        _make_dir(paths[0], user)
    elif op == "remove":
        _remove(paths[0])
    elif op == "rename":
        _rename(paths[0], paths[1], user)
    else:
        raise Failure("unimplemented", f"unknown operation {op}")


def main() -> None:
    op, username, *args = sys.argv[1:]
    try:
        _run(op, username, args)
    except Failure as failure:
        sys.stderr.write(json.dumps({"code": failure.code, "message": failure.message}))
        sys.exit(3)


if __name__ == "__main__":
    main()
