"""The rules file operations follow, and the shell scripts that apply them without the agent.

The scripts hard-code ``/workspace``, which this host does not have (and must not get):
they are run unchanged for paths outside it, and re-rooted to a temporary directory
(the one word ``/workspace`` replaced) to exercise everything else they do.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from runtime.agent import files
from runtime.errors import BadRequest, InternalError, NotFound, WorkspaceError
from runtime.messages import Command, ExecResult


class FakeRun:
    """A ``files.Run`` that records each command and answers with a chosen result."""

    def __init__(self, exit_code: int = 0, stdout: bytes = b"", stderr: bytes = b"") -> None:
        self.result = ExecResult(exit_code=exit_code, stdout=stdout, stderr=stderr, via="test")
        self.commands: list[Command] = []

    def __call__(self, command: Command) -> ExecResult:
        self.commands.append(command)
        return self.result


class LocalRun:
    """A ``files.Run`` that runs the scripts on this host, with ``/workspace`` replaced by ``root``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    def __call__(self, command: Command) -> ExecResult:
        argv = list(command.argv)
        if self.root is not None:
            argv[2] = argv[2].replace(files.WORKSPACE_ROOT, str(self.root))
        cwd = self.root if self.root is not None else Path("/")
        done = subprocess.run(argv, input=command.stdin or b"", cwd=cwd, capture_output=True, check=False, timeout=30)
        return ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr, via="local")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A stand-in for ``/workspace`` (resolved: the scripts compare resolved paths)."""
    made = tmp_path.resolve() / "workspace"
    made.mkdir()
    return made


# ---------------------------------------------------------------------- workspace_path


@pytest.mark.parametrize(
    ("given", "full"),
    [
        ("a/b", "/workspace/a/b"),
        ("a", "/workspace/a"),
        ("./a//b/", "/workspace/a/b"),
        ("/workspace/x/./y", "/workspace/x/y"),
        ("/workspace/x/", "/workspace/x"),
        ("///workspace/x", "/workspace/x"),
        ("a..b/...", "/workspace/a..b/..."),
        ("with space/ünïcode", "/workspace/with space/ünïcode"),
    ],
)
def test_a_path_under_the_workspace_becomes_its_absolute_normal_form(given: str, full: str) -> None:
    assert files.workspace_path(given) == full


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("..", "contains '..'"),
        ("a/../b", "contains '..'"),
        ("/workspace/../etc/passwd", "contains '..'"),
        ("a/..", "contains '..'"),
        ("/etc", "is outside /workspace"),
        ("/etc/passwd", "is outside /workspace"),
        ("/workspace", "is outside /workspace"),
        ("/workspace/", "is outside /workspace"),
        ("/workspace/.", "is outside /workspace"),
        (".", "is outside /workspace"),
        ("/workspacex/a", "is outside /workspace"),
        ("//workspace/a", "is outside /workspace"),
        ("", "empty or contains a NUL byte"),
        ("a\x00b", "empty or contains a NUL byte"),
        ("/workspace/a\x00", "empty or contains a NUL byte"),
        # A line break would not survive the fallback's `$(realpath ...)`: refused either way.
        ("/workspace/a\n", "or a line break"),
        ("notes\nmore", "or a line break"),
    ],
)
def test_a_path_that_is_empty_or_could_leave_the_workspace_is_a_bad_request(given: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says) as refused:
        files.workspace_path(given)
    assert not refused.value.retryable


# ---------------------------------------------------------------------- refusal


@pytest.mark.parametrize(
    ("reason", "family", "message"),
    [
        (
            "outside",
            BadRequest,
            "path '/workspace/l' resolves to '/etc/passwd', outside /workspace (through a symbolic link)",
        ),
        ("missing", NotFound, "no such file: /workspace/l"),
        ("is_dir", BadRequest, "/workspace/l is a directory"),
        ("too_big", BadRequest, "/workspace/l is larger than 64 MiB: read it in parts with exec"),
    ],
)
def test_each_refusal_reason_has_its_family_and_wording(
    reason: str, family: type[WorkspaceError], message: str
) -> None:
    error = files.refusal("/workspace/l", reason, "/etc/passwd")
    assert type(error) is family
    assert error.message == message and not error.retryable


def test_the_reasons_are_the_scripts_exit_codes_43_to_46() -> None:
    assert files.REASONS == {43: "outside", 44: "missing", 45: "too_big", 46: "is_dir"}


def test_an_unknown_reason_is_a_plain_workspace_error_with_the_detail_or_the_reason() -> None:
    with_detail = files.refusal("/workspace/l", "strange", "it broke")
    assert type(with_detail) is WorkspaceError
    assert with_detail.message == "file operation on /workspace/l failed: it broke"
    assert files.refusal("/workspace/l", "strange").message == "file operation on /workspace/l failed: strange"


# ---------------------------------------------------------------------- read_by_exec / write_by_exec


def test_a_read_runs_a_shell_script_in_the_workspace_and_returns_its_stdout() -> None:
    run = FakeRun(stdout=b"the contents")
    assert files.read_by_exec(run, "/workspace/a b/c") == b"the contents"
    [command] = run.commands
    assert command.argv[:2] == ["sh", "-c"] and command.argv[3:] == ["sh", "/workspace/a b/c"]
    assert "realpath -m" in command.argv[2] and "cat" in command.argv[2]
    assert command.cwd == "/workspace" and command.output_limit == files.MAX_FILE_BYTES
    assert command.stdin is None and command.timeout_s is None


@pytest.mark.parametrize(("mode", "argument"), [(None, ""), (0o755, "755"), (0o600, "600"), (0o4711, "4711"), (0, "0")])
def test_a_write_sends_the_data_on_stdin_and_the_mode_in_octal(mode: int | None, argument: str) -> None:
    run = FakeRun()
    files.write_by_exec(run, "/workspace/d/f", b"new\0bytes", mode)
    [command] = run.commands
    assert command.argv[:2] == ["sh", "-c"] and command.argv[3:] == ["sh", "/workspace/d/f", argument]
    assert "mkdir -p" in command.argv[2] and "chmod" in command.argv[2]
    assert command.cwd == "/workspace" and command.stdin == b"new\0bytes"


@pytest.mark.parametrize(("code", "reason"), sorted(files.REASONS.items()))
@pytest.mark.parametrize("operation", ["read", "write"])
def test_each_refusal_exit_code_becomes_its_refusal(code: int, reason: str, operation: str) -> None:
    run = FakeRun(exit_code=code, stdout=b"partial", stderr=b"/etc/shadow\n")
    with pytest.raises(WorkspaceError) as raised:
        if operation == "read":
            files.read_by_exec(run, "/workspace/l")
        else:
            files.write_by_exec(run, "/workspace/l", b"x", None)
    expected = files.refusal("/workspace/l", reason, "/etc/shadow")
    assert type(raised.value) is type(expected) and raised.value.message == expected.message


@pytest.mark.parametrize("code", [1, 2, 42, 126, 127, 137])
@pytest.mark.parametrize("operation", ["read", "write"])
def test_any_other_exit_code_is_a_workspace_error_naming_it(code: int, operation: str) -> None:
    run = FakeRun(exit_code=code, stderr=b"  cat: boom\n")
    with pytest.raises(WorkspaceError) as raised:
        if operation == "read":
            files.read_by_exec(run, "/workspace/l")
        else:
            files.write_by_exec(run, "/workspace/l", b"x", 0o644)
    assert type(raised.value) is WorkspaceError
    assert raised.value.message == f"file operation on /workspace/l failed (exit {code}): cat: boom"


def test_a_read_whose_output_exceeds_the_limit_is_an_internal_error() -> None:
    exactly = bytes(files.MAX_FILE_BYTES)
    assert files.read_by_exec(FakeRun(stdout=exactly), "/workspace/big") is exactly
    with pytest.raises(InternalError, match="/workspace/big grew beyond 64 MiB while it was read"):
        files.read_by_exec(FakeRun(stdout=exactly + b"\n[output truncated]"), "/workspace/big")


# ---------------------------------------------------------------------- the scripts, run on this host


@pytest.mark.parametrize("operation", ["read", "write"])
def test_the_unchanged_scripts_refuse_a_path_outside_the_workspace_with_exit_43(operation: str, tmp_path: Path) -> None:
    assert not Path(files.WORKSPACE_ROOT).exists()  # this test must not be what creates it
    target = tmp_path.resolve() / "file"
    if operation == "read":
        target.write_bytes(b"secret")
    run = FakeRun()
    if operation == "read":
        files.read_by_exec(run, str(target))
    else:
        files.write_by_exec(run, str(target), b"data", 0o600)
    command = run.commands[0]
    done = subprocess.run(
        command.argv, input=command.stdin or b"", cwd=tmp_path, capture_output=True, check=False, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr) == (43, b"", f"{target}\n".encode())
    if operation == "write":
        assert not target.exists()
    with pytest.raises(BadRequest, match=re.escape(f"resolves to '{target}', outside /workspace")):
        if operation == "read":
            files.read_by_exec(LocalRun(), str(target))
        else:
            files.write_by_exec(LocalRun(), str(target), b"data", 0o600)
    assert not Path(files.WORKSPACE_ROOT).exists()


def test_a_write_creates_parents_sets_the_mode_and_reads_back(root: Path) -> None:
    run = LocalRun(root)
    files.write_by_exec(run, f"{root}/d/e/f", b"hello\0world\n", 0o640)
    written = root / "d" / "e" / "f"
    assert written.read_bytes() == b"hello\0world\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o640
    assert files.read_by_exec(run, f"{root}/d/e/f") == b"hello\0world\n"
    files.write_by_exec(run, f"{root}/d/e/f", b"shorter", None)  # replaced whole, mode kept
    assert written.read_bytes() == b"shorter" and stat.S_IMODE(written.stat().st_mode) == 0o640
    files.write_by_exec(run, f"{root}/empty", b"", None)
    assert files.read_by_exec(run, f"{root}/empty") == b""


def test_the_scripts_refuse_missing_files_and_directories(root: Path) -> None:
    run = LocalRun(root)
    (root / "dir").mkdir()
    with pytest.raises(NotFound, match=re.escape(f"no such file: {root}/nothing")):
        files.read_by_exec(run, f"{root}/nothing")
    with pytest.raises(BadRequest, match=re.escape(f"{root}/dir is a directory")):
        files.read_by_exec(run, f"{root}/dir")
    with pytest.raises(BadRequest, match=re.escape(f"{root}/dir is a directory")):
        files.write_by_exec(run, f"{root}/dir", b"x", None)
    assert (root / "dir").is_dir() and list((root / "dir").iterdir()) == []


def test_the_scripts_follow_links_and_refuse_those_leading_outside(root: Path) -> None:
    run = LocalRun(root)
    outside = root.parent / "outside.txt"
    outside.write_bytes(b"not yours")
    (root / "escape").symlink_to(outside)
    (root / "inner").symlink_to(root / "real")
    (root / "real").write_bytes(b"through the link")
    assert files.read_by_exec(run, f"{root}/inner") == b"through the link"
    with pytest.raises(BadRequest, match=re.escape(f"resolves to '{outside}'")):
        files.read_by_exec(run, f"{root}/escape")
    with pytest.raises(BadRequest, match=re.escape(f"resolves to '{outside}'")):
        files.write_by_exec(run, f"{root}/escape", b"overwritten", None)
    assert outside.read_bytes() == b"not yours"


def test_the_read_script_refuses_a_file_larger_than_the_limit(root: Path) -> None:
    big = root / "big"
    with big.open("wb") as handle:
        handle.truncate(files.MAX_FILE_BYTES + 1)  # sparse: no disk space used
    with pytest.raises(BadRequest, match="is larger than 64 MiB"):
        files.read_by_exec(LocalRun(root), str(big))
    os.truncate(big, 3)
    assert files.read_by_exec(LocalRun(root), str(big)) == b"\0\0\0"
