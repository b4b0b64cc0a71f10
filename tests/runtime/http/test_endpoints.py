"""The REST table, directly: one endpoint per op, and arguments the op's struct accepts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import pytest

from runtime.http.endpoints import ENDPOINTS, Endpoint, Incoming
from runtime.messages import OPS, ExecArgs, ListArgs, WriteFileArgs, broken_rule, invalid_values

WS = "ws_1"
PROCESS = "proc_1"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEA\n-----END PRIVATE KEY-----\n"


def incoming(
    params: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    body: bytes = b"",
    json: dict[str, Any] | None = None,
) -> Incoming:
    return Incoming(params or {}, query or {}, body, json or {})


TYPICAL: dict[str, Incoming] = {
    "providers": incoming(),
    "stats": incoming(),
    "snapshot": incoming(),
    "list": incoming(query={"label": ["team=a"], "state": ["ready"]}),
    "create": incoming(json={"cpu": 0.5, "memory": "512M", "labels": {"team": "a"}, "ttl_seconds": 60}),
    "get": incoming({"workspace_id": WS}),
    "destroy": incoming({"workspace_id": WS}),
    "exec": incoming({"workspace_id": WS}, json={"cmd": ["ls", "-l"], "timeout_s": 5, "stdin": "aGk="}),
    "exec_list": incoming({"workspace_id": WS}),
    "exec_stdin": incoming({"workspace_id": WS, "process_id": PROCESS}, {"close": ["true"]}, b"hello\n"),
    "exec_kill": incoming({"workspace_id": WS, "process_id": PROCESS}, json={"signal": "KILL"}),
    "exec_output": incoming({"workspace_id": WS, "process_id": PROCESS}, {"after": ["3"]}),
    "read_file": incoming({"workspace_id": WS}, {"path": ["src/a.py"]}),
    "write_file": incoming({"workspace_id": WS}, {"path": ["run.sh"], "mode": ["755"]}, b"#!/bin/sh\n"),
    "extend": incoming({"workspace_id": WS}, json={"ttl_seconds": 3600}),
    "git_clone": incoming({"workspace_id": WS}, json={"repo": "octo/hello", "ref": "main", "depth": 1}),
    "github_app_list": incoming(),
    "github_app_set": incoming({"name": "ci-app"}, json={"app_id": 1, "installation_id": 2, "private_key": PEM}),
    "github_app_delete": incoming({"name": "ci-app"}),
    "github_key_rotate": incoming(json={"key": "ab" * 32}),
    "github_audit": incoming(query={"after": ["5"], "limit": ["10"]}),
    "mcp_list": incoming(),
}
"""A typical request of each endpoint's op (every endpoint must have one here)."""


def endpoint_of(op: str) -> Endpoint:
    return next(endpoint for endpoint in ENDPOINTS if endpoint.op == op)


def test_every_op_but_ping_and_mcp_call_has_exactly_one_endpoint() -> None:
    counted = Counter(endpoint.op for endpoint in ENDPOINTS)
    # mcp_call is carried by MCP's own transport at {API}/mcp/{name} (runtime.http.mcp), not the table.
    assert set(counted) == set(OPS) - {"ping", "mcp_call"}
    assert [op for op, times in counted.items() if times != 1] == []


def test_no_method_and_path_pair_is_served_by_two_endpoints() -> None:
    pairs = Counter((endpoint.method, endpoint.path) for endpoint in ENDPOINTS)
    assert [pair for pair, times in pairs.items() if times != 1] == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.op)
def test_a_typical_request_of_each_endpoint_converts_to_its_ops_arguments_and_keeps_every_rule(
    endpoint: Endpoint,
) -> None:
    values = endpoint.args(TYPICAL[endpoint.op])
    args = msgspec.convert(values, OPS[endpoint.op])
    assert broken_rule(OPS[endpoint.op], args) is None
    for name, value in TYPICAL[endpoint.op].params.items():
        assert getattr(args, name) == value


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if "{" in e.path and e.body == "json"], ids=lambda e: e.op)
def test_what_the_path_names_wins_over_the_same_field_in_the_body(endpoint: Endpoint) -> None:
    typical = TYPICAL[endpoint.op]
    smuggled = {**typical.json, **{name: "someone-else" for name in typical.params}}
    values = endpoint.args(incoming(typical.params, typical.query, typical.body, smuggled))
    assert {name: values[name] for name in typical.params} == typical.params


def test_list_reads_repeated_labels_and_the_state() -> None:
    values = endpoint_of("list").args(incoming(query={"label": ["team=a", "expr=x=y", "empty="], "state": ["ready"]}))
    assert values == {"labels": {"team": "a", "expr": "x=y", "empty": ""}, "state": "ready"}
    assert msgspec.convert(values, ListArgs) == ListArgs(labels=values["labels"], state="ready")


def test_list_without_a_filter_asks_for_every_workspace() -> None:
    values = endpoint_of("list").args(incoming())
    assert values == {"labels": {}}
    assert msgspec.convert(values, ListArgs) == ListArgs()


def test_list_with_an_empty_state_filters_by_no_state() -> None:
    assert endpoint_of("list").args(incoming(query={"state": [""]})) == {"labels": {}}


@pytest.mark.parametrize(("mode", "bits"), [("755", 0o755), ("0644", 0o644), ("0", 0), ("7777", 0o7777)])
def test_write_file_reads_its_mode_in_octal(mode: str, bits: int) -> None:
    values = endpoint_of("write_file").args(incoming({"workspace_id": WS}, {"path": ["a"], "mode": [mode]}, b"x"))
    assert values["mode"] == bits
    assert msgspec.convert(values, WriteFileArgs).mode == bits


def test_write_file_without_a_mode_leaves_it_to_the_default() -> None:
    values = endpoint_of("write_file").args(incoming({"workspace_id": WS}, {"path": ["a"]}, b"x"))
    assert "mode" not in values
    assert msgspec.convert(values, WriteFileArgs) == WriteFileArgs(workspace_id=WS, path="a", data=b"x")


@pytest.mark.parametrize("mode", ["9", "0o755", "rwx", "77777", "-1", ""])
def test_a_mode_that_is_not_octal_is_left_as_given_and_refused_with_words_naming_it(mode: str) -> None:
    values = endpoint_of("write_file").args(incoming({"workspace_id": WS}, {"path": ["a"], "mode": [mode]}, b"x"))
    assert values["mode"] == mode
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert(values, WriteFileArgs)
    explained = invalid_values("write_file", values, refused.value)
    assert explained.startswith("invalid args for write_file: ")
    assert "mode" in explained


@pytest.mark.parametrize(("close", "closed"), [("1", True), ("true", True), ("false", False), ("0", False)])
def test_exec_stdin_closes_only_when_asked_to(close: str, closed: bool) -> None:
    params = {"workspace_id": WS, "process_id": PROCESS}
    values = endpoint_of("exec_stdin").args(incoming(params, {"close": [close]}, b"data"))
    assert values == {**params, "data": b"data", "close": closed}


def test_exec_output_reads_after_as_a_number_and_defaults_to_zero() -> None:
    params = {"workspace_id": WS, "process_id": PROCESS}
    output = endpoint_of("exec_output")
    assert output.args(incoming(params, {"after": ["12"]}))["after"] == 12
    assert output.args(incoming(params))["after"] == 0


@pytest.mark.parametrize("op", ["exec_output", "github_audit"])
def test_a_number_that_is_not_digits_is_left_for_the_ops_struct_to_refuse(op: str) -> None:
    endpoint = endpoint_of(op)
    values = endpoint.args(incoming({"workspace_id": WS, "process_id": PROCESS}, {"after": ["-1"]}))
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(values, OPS[op])


@pytest.mark.parametrize("op", ["exec_output", "github_audit"])
@pytest.mark.parametrize("number", ["²", "\uff11\uff12", "\u0663"], ids=["superscript", "fullwidth", "arabic-indic"])
def test_a_digit_that_is_not_ascii_is_left_for_the_ops_struct_to_refuse(op: str, number: str) -> None:
    # str.isdigit() is true for these, and int() refuses "²": only ASCII digits are numbers.
    endpoint = endpoint_of(op)
    values = endpoint.args(incoming({"workspace_id": WS, "process_id": PROCESS}, {"after": [number]}))
    assert values["after"] == number
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(values, OPS[op])


def test_github_audit_takes_only_the_numbers_it_is_given() -> None:
    audit = endpoint_of("github_audit")
    assert audit.args(incoming()) == {}
    assert audit.args(incoming(query={"limit": ["7"]})) == {"limit": 7}


def test_exec_reads_its_stdin_from_base64_in_json() -> None:
    values = endpoint_of("exec").args(TYPICAL["exec"])
    assert msgspec.convert(values, ExecArgs).stdin == b"hi"
