"""The CLI without a server: how it prints, how it parses ``exec`` and ``cp``, how it fails."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from runtime.cli.commands import COMMANDS, _cp, _remote
from runtime.cli.tables import age, pairs, pct, print_json, records_table, size, states, table
from runtime.errors import ConfigError, NotFound
from runtime.messages import ExecResult
from runtime.wire import Client
from tests.conftest import MakeSettings
from tests.runtime.messages.test_messages import record

cli = importlib.import_module("runtime.cli.main")  # the package's `main` is the function

# ---------------------------------------------------------------------- tables


def test_pairs_maps_key_value_options_splitting_at_the_first_equals_sign() -> None:
    assert pairs(["A=1", "URL=http://x/?a=b", "EMPTY=", "A=2"], "env") == {
        "A": "2",
        "URL": "http://x/?a=b",
        "EMPTY": "",
    }
    assert pairs(None, "env") == {}
    assert pairs([], "label") == {}


@pytest.mark.parametrize("item", ["novalue", "=value", ""])
def test_pairs_refuses_anything_but_key_equals_value_naming_the_option(item: str) -> None:
    with pytest.raises(ConfigError) as raised:
        pairs(["OK=1", item], "label")
    assert raised.value.message == f"--label {item!r}: expected KEY=VALUE"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (1023, "1023"), (1024, "1K"), (1536, "1.5K"), (512 << 20, "512M"), (4 << 30, "4G"), (5 << 50, "5120T")],
)
def test_size_uses_the_largest_binary_unit_that_fits(value: int, text: str) -> None:
    assert size(value) == text


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (None, "never"),
        (NOW + 30, "in 30s"),
        (NOW + 120, "in 2m"),
        (NOW + 5 * 3600, "in 5h"),
        (NOW + 2 * 86400, "in 2d"),
        (NOW, "0s ago"),
        (NOW - 5, "5s ago"),
        (NOW - 3 * 3600, "3h ago"),
        (NOW - 400 * 86400, "400d ago"),
    ],
)
def test_age_says_how_far_a_moment_is_in_the_future_or_past(moment: float | None, text: str) -> None:
    assert age(moment, NOW) == text


def test_table_aligns_columns_two_spaces_apart_without_trailing_blanks() -> None:
    assert table([["A", "BB"], ["ccc", "d"]]) == "A    BB\nccc  d"
    assert table([["ID", "LABELS"], ["ws_1", ""], ["ws_long_id", "a=1"]]) == (
        "ID          LABELS\nws_1\nws_long_id  a=1"
    )
    assert table([["ONLY", "HEADER"]]) == "ONLY  HEADER"


def test_records_table_lists_each_record_under_the_header_with_sizes_ages_and_sorted_labels() -> None:
    now = time.time()
    rows = records_table([
        record(id="ws_a", labels={"b": "2", "a": "1"}, cpu=0.5, memory_bytes=512 << 20, created_at=now - 7230,
               expires_at=now + 3 * 86400 + 600),
        record(id="ws_bb", state="failed", provider="e2b", runtime="e2b", labels={}, persistent=True,
               created_at=now - 30.2, expires_at=None),
    ]).split("\n")  # fmt: skip
    assert len(rows) == 3
    cells = [re.split(r" {2,}", row) for row in rows]
    assert cells == [
        ["ID", "STATE", "PROVIDER", "RUNTIME", "CPU", "MEMORY", "CREATED", "EXPIRES", "LABELS"],
        ["ws_a", "ready", "gvisor", "runsc", "0.5", "512M", "2h ago", "in 3d", "a=1,b=2"],
        ["ws_bb", "failed", "e2b", "e2b", "2", "4G", "30s ago", "never"],
    ]
    starts = [row.index("ready") for row in rows[1:2]] + [rows[0].index("STATE"), rows[2].index("failed")]
    assert len(set(starts)) == 1  # one column, one start


@pytest.mark.parametrize(("value", "text"), [(None, "-"), (0.0, "0%"), (12.4, "12%"), (250.0, "250%")])
def test_pct_rounds_a_percentage_or_says_not_measured(value: float | None, text: str) -> None:
    assert pct(value) == text


def test_states_counts_by_state_in_name_order_or_none() -> None:
    assert states({"ready": 2, "failed": 1, "creating": 3}) == "3 creating, 1 failed, 2 ready"
    assert states({}) == "none"


def test_print_json_prints_structs_and_plain_values_sorted_and_indented(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"b": 1, "a": [1, None]})
    assert capsys.readouterr().out == '{\n  "a": [\n    1,\n    null\n  ],\n  "b": 1\n}\n'
    result = ExecResult(exit_code=2, stdout=b"hi", stderr=b"")
    print_json([result])
    out = capsys.readouterr().out
    [printed] = json.loads(out)
    assert printed == msgspec.to_builtins(result)
    assert printed["stdout"] == "aGk="  # bytes as base64
    assert list(printed) == sorted(printed)


# ---------------------------------------------------------------------- argument parsing


class Offline:
    """``main`` with no server: settings from the test, a stand-in client, logging left alone."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings) -> None:
        self.monkeypatch = monkeypatch
        self.settings = make_settings(zmq_events_endpoint="tcp://127.0.0.1:7999")
        self.client = object()
        self.levels: list[tuple[Any, str]] = []
        self.args: list[argparse.Namespace] = []
        monkeypatch.setattr(cli, "load_settings", lambda: self.settings)
        monkeypatch.setattr(cli, "configure", lambda level, fmt: self.levels.append((level, fmt)))
        monkeypatch.setattr(cli, "_client", lambda settings, args: contextlib.nullcontext(self.client))

    def record(self, command: str, status: int = 0, error: Exception | None = None) -> None:
        """Replace ``command`` with one that keeps its arguments (and raises ``error``)."""

        def run(client: Any, args: argparse.Namespace) -> int:
            assert client is self.client
            self.args.append(args)
            if error is not None:
                raise error
            return status

        self.monkeypatch.setitem(COMMANDS, command, run)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings) -> Offline:
    return Offline(monkeypatch, make_settings)


def test_exec_takes_everything_after_the_first_double_dash_as_the_command_verbatim(offline: Offline) -> None:
    offline.record("exec", status=7)
    argv = ["--timeout", "5", "exec", "ws_1", "--cwd", "/workspace/src", "--env", "A=1", "--",
            "sh", "-c", "echo --json -- done", "--", "--help", "--json"]  # fmt: skip
    assert cli.main(argv) == 7
    [args] = offline.args
    assert (args.workspace_id, args.cwd, args.env, args.timeout) == ("ws_1", "/workspace/src", ["A=1"], 5.0)
    assert args.cmd == ["sh", "-c", "echo --json -- done", "--", "--help", "--json"]
    assert not args.json
    assert args.events_endpoint == "tcp://127.0.0.1:7999"  # from the settings when not given
    assert offline.levels == [(logging.WARNING, "text")]  # only serve logs at --log-level


NO_COMMAND = "no command: use `workspaces exec ID -- COMMAND [ARGS...]` or --shell STRING"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["exec", "ws_1"], NO_COMMAND),
        (["exec", "ws_1", "--"], NO_COMMAND),
        (["exec", "ws_1", "--shell", "ls", "--", "ls"], "give either --shell STRING or a command after --, not both"),
    ],
)
def test_exec_without_exactly_one_command_exits_2_with_one_line(
    offline: Offline, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"workspaces: {message}\n"


def test_a_workspace_error_exits_1_with_its_code_and_message(
    offline: Offline, capsys: pytest.CaptureFixture[str]
) -> None:
    offline.record("get", error=NotFound("workspace ws_9 does not exist"))
    assert cli.main(["get", "ws_9"]) == 1
    assert capsys.readouterr().err == "workspaces: not_found: workspace ws_9 does not exist\n"


def test_exec_needs_a_workspace_id_before_the_double_dash(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["exec", "--", "ls"])
    assert exited.value.code == 2
    assert "the following arguments are required: workspace_id" in capsys.readouterr().err


def test_for_other_commands_a_double_dash_only_ends_the_options(offline: Offline) -> None:
    offline.record("cp")
    assert cli.main(["cp", "--", "-notes.txt", "ws_1:notes.txt"]) == 0
    [args] = offline.args
    assert (args.source, args.target, args.cmd) == ("-notes.txt", "ws_1:notes.txt", [])


def test_doctor_and_cp_options_parse() -> None:
    assert cli._parser().parse_args(["doctor", "--json"]).json
    args = cli._parser().parse_args(["cp", "local.txt", "ws_1:run.sh", "--mode", "755"])
    assert (args.command, args.source, args.target, args.mode) == ("cp", "local.txt", "ws_1:run.sh", 0o755)


# ---------------------------------------------------------------------- cp


@pytest.mark.parametrize(
    ("spec", "remote"),
    [
        ("ws_abc:/workspace/a.txt", ("ws_abc", "/workspace/a.txt")),
        ("ws_abc:notes/a.txt", ("ws_abc", "notes/a.txt")),
        ("ws_abc:a:b", ("ws_abc", "a:b")),
        ("ws_abc:", ("ws_abc", "")),
        ("local.txt", None),
        ("-", None),
        ("./ws_abc:a", None),
        ("/tmp/ws_abc:a", None),
        ("C:stuff", None),
        ("ws_abc", None),
    ],
)
def test_a_remote_spec_is_a_workspace_id_colon_path(spec: str, remote: tuple[str, str] | None) -> None:
    assert _remote(spec) == remote


class Files:
    """A client holding one workspace's files."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], tuple[bytes, int | None]] = {}

    def write_file(self, workspace_id: str, path: str, data: bytes, mode: int | None = None) -> None:
        self.files[(workspace_id, path)] = (data, mode)

    def read_file(self, workspace_id: str, path: str) -> bytes:
        return self.files[(workspace_id, path)][0]


def cp(files: Files, source: str, target: str, mode: int | None = None) -> int:
    return _cp(cast(Client, files), argparse.Namespace(source=source, target=target, mode=mode))


@pytest.mark.parametrize(("source", "target"), [("a.txt", "b.txt"), ("ws_1:a", "ws_2:b"), ("-", "-")])
def test_cp_copies_between_this_machine_and_a_workspace_only(source: str, target: str) -> None:
    with pytest.raises(ConfigError, match="one side must be WORKSPACE_ID:PATH"):
        cp(Files(), source, target)


def test_cp_uploads_a_file_or_stdin_and_downloads_to_a_file_or_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    files = Files()
    local = tmp_path / "run.sh"
    local.write_bytes(b"#!/bin/sh\n")
    assert cp(files, str(local), "ws_1:bin/run.sh", mode=0o755) == 0
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"piped")))
    assert cp(files, "-", "ws_1:in.txt") == 0
    assert files.files == {("ws_1", "bin/run.sh"): (b"#!/bin/sh\n", 0o755), ("ws_1", "in.txt"): (b"piped", None)}
    assert cp(files, "ws_1:bin/run.sh", str(tmp_path / "copy.sh")) == 0
    assert (tmp_path / "copy.sh").read_bytes() == b"#!/bin/sh\n"
    assert cp(files, "ws_1:in.txt", "-") == 0
    assert capsysbinary.readouterr().out == b"piped"
